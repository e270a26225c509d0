// A small client of authsvc written against the types openapi-typescript
// generates from ../openapi.json (npm run generate): a change of the
// document that would break such a client stops this file compiling.
import type { components, operations, paths } from "./generated/api";

type Schemas = components["schemas"];
type JSONOf<R> = R extends { content: { "application/json": infer B } } ? B : never;
type Answers<Op extends keyof operations> = operations[Op]["responses"];
type Success<Op extends keyof operations, S extends keyof Answers<Op>> = JSONOf<Answers<Op>[S]>;
type Failure<Op extends keyof operations> = {
  [S in keyof Answers<Op>]: S extends 200 | 201 | 204 ? never : JSONOf<Answers<Op>[S]>;
}[keyof Answers<Op>];
type Body<Op extends keyof operations> = operations[Op] extends {
  requestBody: { content: { "application/json": infer B } };
}
  ? B
  : never;

export type User = Schemas["User"];
export type Session = Success<"login", 200>;
export type TokenPair = Success<"refresh", 200>;
export type Health = Success<"health", 200>;

/** An answer: the documented body of a success, or of a failure. */
export type Result<T, E> =
  | { ok: true; status: number; body: T }
  | { ok: false; status: number; body: E; retryAfter?: number };

async function call<T, E>(
  base: string,
  method: "GET" | "POST",
  path: keyof paths,
  init: { body?: unknown; token?: string } = {},
): Promise<Result<T, E>> {
  const headers: Record<string, string> = {};
  if (init.body !== undefined) headers["Content-Type"] = "application/json";
  if (init.token !== undefined) headers["Authorization"] = `Bearer ${init.token}`;
  const res = await fetch(new URL(path, base), {
    method,
    headers,
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const body: unknown = res.status === 204 ? undefined : await res.json();
  if (res.ok) return { ok: true, status: res.status, body: body as T };
  const retry = res.headers.get("Retry-After");
  return {
    ok: false,
    status: res.status,
    body: body as E,
    ...(retry === null ? {} : { retryAfter: Number(retry) }),
  };
}

export const register = (base: string, body: Body<"register">) =>
  call<Success<"register", 201>, Failure<"register">>(base, "POST", "/auth/register", { body });
export const login = (base: string, body: Body<"login">) =>
  call<Session, Failure<"login">>(base, "POST", "/auth/login", { body });
export const refresh = (base: string, refreshToken: string) =>
  call<TokenPair, Failure<"refresh">>(base, "POST", "/auth/refresh", { body: { refreshToken } });
export const logout = (base: string, refreshToken: string) =>
  call<undefined, Failure<"logout">>(base, "POST", "/auth/logout", { body: { refreshToken } });
export const me = (base: string, accessToken: string) =>
  call<User, Failure<"me">>(base, "GET", "/auth/me", { token: accessToken });
export const health = (base: string) => call<Health, Failure<"health">>(base, "GET", "/health");

/** What a login failure says, told apart by statusCode as a NestJS client does. */
export function loginFailure(e: Failure<"login">): string {
  switch (e.statusCode) {
    case 400:
      // class-validator's list, or the one message of a body that is not JSON
      return Array.isArray(e.message) ? e.message.join("; ") : e.message;
    case 401: {
      const m: "Invalid credentials" = e.message;
      return `${m} (${e.error})`;
    }
    case 429: {
      const m: "ThrottlerException: Too Many Requests" = e.message;
      return m;
    }
    case 413:
    case 415:
    case 500:
    case 503:
      return e.message;
  }
}

/** Logs in, refreshes once, reads the user and logs out. */
export async function session(base: string): Promise<User> {
  const s = await login(base, { email: "alice@example.com", password: "correct horse" });
  if (!s.ok) throw new Error(loginFailure(s.body));
  const r = await refresh(base, s.body.refreshToken);
  if (!r.ok) throw new Error(r.body.message === "Invalid refresh token" ? "logged out" : String(r.body.message));
  const u = await me(base, r.body.accessToken);
  if (!u.ok) {
    const bare: { message: "Unauthorized"; statusCode: 401 } | { statusCode: 400 | 413 | 415 | 500 | 503 } = u.body;
    throw new Error(`me: ${bare.statusCode}`);
  }
  await logout(base, r.body.refreshToken);
  const name: string | null = u.body.name;
  return { ...u.body, name };
}

// The shapes clients rely on, checked at compile time.
export const examples = {
  user: { id: "0b5d2f2e-7f7c-4a5e-9d59-5b1c2a9d3e11", email: "a@example.com", name: null, createdAt: "2026-01-01T00:00:00.000Z" } satisfies User,
  register: { email: "a@example.com", password: "password123", name: null } satisfies Body<"register">,
  health: { status: "ok", info: { database: { status: "up" } }, error: {}, details: { database: { status: "up" } } } satisfies Health,
  validation: { message: ["email must be an email"], error: "Bad Request", statusCode: 400 } satisfies Failure<"register">,
  conflict: { message: "Email already registered", error: "Conflict", statusCode: 409 } satisfies Failure<"register">,
  unavailable: { message: "Database unavailable, retry shortly", error: "Service Unavailable", statusCode: 503 } satisfies Failure<"refresh">,
};

// @ts-expect-error a user's name is nullable, not optional
export const noName: User = { id: "x", email: "a@example.com", createdAt: "2026-01-01T00:00:00.000Z" };
// @ts-expect-error login takes no name: unknown properties are refused
export const loginWithName: Body<"login"> = { email: "a@example.com", password: "x", name: "A" };
// @ts-expect-error login's 401 is NestJS's shape, not passport's bare one
export const bare401: Failure<"login"> = { message: "Unauthorized", statusCode: 401 };
// @ts-expect-error refresh is never rate-limited
export const refresh429: Failure<"refresh"> = { statusCode: 429, message: "ThrottlerException: Too Many Requests" };
// @ts-expect-error a session has no password hash
export const leak: Session = { ...({} as Session), passwordHash: "$2a$" };

package handlers

import (
	"net/http"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/tokenrelay/authsvc/auth"
	"github.com/tokenrelay/authsvc/models"
)

// userJSON is the public view of a user: the password hash never leaves.
type userJSON struct {
	ID        string  `json:"id"`
	Email     string  `json:"email"`
	Name      *string `json:"name"`
	CreatedAt string  `json:"createdAt"`
}

func toUserJSON(u models.User) userJSON {
	return userJSON{
		ID:        u.ID,
		Email:     u.Email,
		Name:      u.Name,
		CreatedAt: u.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), // JSON.stringify(new Date())
	}
}

type sessionJSON struct {
	User         userJSON `json:"user"`
	AccessToken  string   `json:"accessToken"`
	RefreshToken string   `json:"refreshToken"`
}

type tokensJSON struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
}

// writeSecret writes an answer that carries a token or a user: no cache on
// the way may keep it (RFC 6749 section 5.1).
func writeSecret(c echo.Context, status int, v any) error {
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("Pragma", "no-cache")
	return writeJSON(c, status, v)
}

// writeSession answers a new session, the shared end of registration and
// login: the user and the token pair.
func writeSession(c echo.Context, status int, sess auth.Session) error {
	return writeSecret(c, status, sessionJSON{toUserJSON(sess.User), sess.AccessToken, sess.RefreshToken})
}

func (s *server) register(c echo.Context) error {
	in, err := input(c, registerDTO)
	if err != nil {
		return err
	}
	sess, err := s.auth.Register(c.Request().Context(), in.Email, in.Password, in.Name)
	if err != nil {
		return err
	}
	return writeSession(c, http.StatusCreated, sess)
}

func (s *server) login(c echo.Context) error {
	in, err := input(c, loginDTO)
	if err != nil {
		return err
	}
	if err := s.throttle.account(c, in.Email); err != nil {
		return err
	}
	sess, err := s.auth.Login(c.Request().Context(), in.Email, in.Password)
	if err != nil {
		return err
	}
	return writeSession(c, http.StatusOK, sess)
}

func (s *server) refresh(c echo.Context) error {
	in, err := input(c, refreshTokenDTO)
	if err != nil {
		return err
	}
	tokens, err := s.auth.Refresh(c.Request().Context(), in.RefreshToken)
	if err != nil {
		return err
	}
	return writeSecret(c, http.StatusOK, tokensJSON{tokens.AccessToken, tokens.RefreshToken})
}

func (s *server) logout(c echo.Context) error {
	in, err := input(c, refreshTokenDTO)
	if err != nil {
		return err
	}
	if err := s.auth.Logout(c.Request().Context(), in.RefreshToken); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) me(c echo.Context) error {
	token, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
	if !ok {
		return errUnauthorized
	}
	u, err := s.auth.Authenticate(c.Request().Context(), token)
	if err != nil {
		return err
	}
	return writeSecret(c, http.StatusOK, toUserJSON(u))
}

// bearerToken reads the header as passport-jwt's fromAuthHeaderAsBearerToken
// does, with the regexp /(\S+)\s+(\S+)/: the first word is the scheme, in
// any case, the second the token; whitespace of any kind and amount around
// them, and anything after the token, are ignored.
func bearerToken(header string) (string, bool) {
	words := strings.FieldsFunc(header, isJSSpace)
	if len(words) < 2 || !strings.EqualFold(words[0], "bearer") {
		return "", false
	}
	return words[1], true
}

// isJSSpace is JavaScript's \s: Unicode's white space and the BOM, but not NEL.
func isJSSpace(r rune) bool { return unicode.IsSpace(r) && r != '\u0085' || r == '\uFEFF' }

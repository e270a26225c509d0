package handlers

import (
	"github.com/labstack/echo/v4"

	"github.com/tokenrelay/authsvc/bodyparser"
	"github.com/tokenrelay/authsvc/classvalidator"
)

// The bodies of the API's POST routes, once valid.
type (
	registerInput struct {
		Email, Password string
		Name            *string // nil when missing or null
	}
	loginInput   struct{ Email, Password string }
	refreshInput struct{ RefreshToken string } // refresh and logout
)

// The DTOs of the API, with class-validator's rules in the order it
// reports them: the decorator nearest the property first.
var (
	registerDTO = classvalidator.NewClass(
		classvalidator.Required("email", func(in *registerInput) *string { return &in.Email },
			classvalidator.IsEmail()),
		classvalidator.Required("password", func(in *registerInput) *string { return &in.Password },
			classvalidator.IsByteLength(0, 72),
			classvalidator.MaxLength(72),
			// The contract: "8 to 72 bytes (bcrypt's limit)". NestJS's
			// @MinLength(8) counts characters, so "éééé" (8 bytes) passes
			// here and not there; the message stays class-validator's.
			classvalidator.MinLengthBytes(8),
			classvalidator.IsString()),
		classvalidator.Optional("name", func(in *registerInput) **string { return &in.Name },
			classvalidator.MaxLength(100),
			classvalidator.IsString()),
	)
	loginDTO = classvalidator.NewClass(
		classvalidator.Required("email", func(in *loginInput) *string { return &in.Email },
			classvalidator.IsEmail()),
		classvalidator.Required("password", func(in *loginInput) *string { return &in.Password },
			classvalidator.IsNotEmpty(), classvalidator.IsString()),
	)
	refreshTokenDTO = classvalidator.NewClass(
		classvalidator.Required("refreshToken", func(in *refreshInput) *string { return &in.RefreshToken },
			classvalidator.IsNotEmpty(), classvalidator.IsString()),
	)
)

// bodyContext is a request's echo.Context once its body is read, as echo's
// guide extends a context: the handlers find the body here. (echo's own
// c.Set would cost every request a map.)
type bodyContext struct {
	echo.Context
	body *bodyparser.Object
}

// parseBody is middleware that reads the body the way NestJS's Express
// adapter does, for every request, routed or not: a malformed body is a
// 400 even on an unknown route. It runs after routing, as echo's router
// needs its own context type.
func parseBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := bodyparser.Read(c.Request())
		if err != nil {
			return err
		}
		return next(&bodyContext{c, body})
	}
}

// input validates the request body against dto, as ValidationPipe would,
// and returns it typed.
func input[T any](c echo.Context, dto *classvalidator.Class[T]) (T, error) {
	if bc, ok := c.(*bodyContext); ok {
		return dto.Validate(bc.body)
	}
	return dto.Validate(&bodyparser.Object{}) // no body was read
}

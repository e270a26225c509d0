package naiverotation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Rotator is a rotation: Store.Rotate or Locked.Rotate.
type Rotator func(ctx context.Context, token string) (string, error)

// Handler serves POST /auth/refresh with rotate, in the contract's shapes:
// {"refreshToken": "..."} in, {"refreshToken": "..."} out. A token that has
// no row is a 401; any other error is a 500 whose message is the error's
// text, as an unhandled exception in the original service was.
func Handler(rotate Rotator) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/refresh", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			RefreshToken string `json:"refreshToken"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.RefreshToken == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": http.StatusBadRequest, "message": "refreshToken must be a string"})
			return
		}
		next, err := rotate(r.Context(), in.RefreshToken)
		switch {
		case errors.Is(err, ErrInvalidToken):
			writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": http.StatusUnauthorized, "message": "Invalid refresh token"})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]any{"statusCode": http.StatusInternalServerError, "message": err.Error()})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"refreshToken": next})
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

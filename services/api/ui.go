package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the web UI: plain HTML, CSS and JavaScript modules, no build
// step and nothing loaded from elsewhere.
//
//go:embed ui
var uiFiles embed.FS

// mountUI serves the UI under /ui/ and redirects / there.
func (s *Server) mountUI() {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	s.mux.Handle("GET /ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
}

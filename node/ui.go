package node

// The status page at GET /ui: one HTML page, a script and a style sheet,
// embedded in the binary (no build step, no external assets). The page
// fetches /v1/status and /v1/history with the bearer token and draws this
// node, its peers (coloured by PeerSync.State) and each organisation's
// replica.
//
// A browser cannot send the bearer header when it navigates, so /ui alone
// accepts the token as ?token=; the page then removes it from the address
// bar and sends it as a header to the JSON routes. The script and style
// sheet (/ui/app.js, /ui/style.css) carry no data and need no token.

import (
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
)

//go:embed ui
var uiFiles embed.FS

var uiAssets, _ = fs.Sub(uiFiles, "ui")

var errMethod = errors.New("the status page answers GET only")

const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var uiDenied = template.Must(template.New("denied").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>examnode: token needed</title></head>
<body><h1>examnode status page: token needed</h1><p>Open <code>/ui?token=TOKEN</code> with the token from {{.}}, e.g.
<code>xdg-open "http://$(cat api.addr)/ui?token=$(cat api.token)"</code> in the data directory.</p></body></html>`))

// withUI serves the status page in front of the authenticated API.
func (n *Node) withUI(api http.Handler) http.Handler {
	assets := http.FileServerFS(uiAssets)
	want := []byte(n.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch p {
		case "/ui", "/ui/", "/ui/app.js", "/ui/style.css":
		default:
			// Anything else, under /ui/ too, needs the token.
			api.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			refuseConn(w)
			writeErr(w, http.StatusMethodNotAllowed, "method", errMethod)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		switch p {
		case "/ui", "/ui/":
			if subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), want) != 1 {
				refuseConn(w)
				h.Set("Content-Type", "text/html; charset=utf-8")
				w.WriteHeader(http.StatusUnauthorized)
				_ = uiDenied.Execute(w, filepath.Join(n.dir, TokenFile))
				return
			}
			markAuthenticated(r)
			b, _ := fs.ReadFile(uiAssets, "index.html")
			h.Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(b)
		case "/ui/app.js", "/ui/style.css":
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimPrefix(p, "/ui")
			assets.ServeHTTP(w, r2)
		}
	})
}

package systemtest

import (
	"bytes"
	"debug/buildinfo"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/internal/testapi"
)

// versionShape is the documented shape of `thumbnailed version` (DESIGN.md
// "Operations"): "thumbnailed v0.3.0 (commit 1a2b3c4) go1.26.8 engine=vips 8.14.1"
// or "... engine=pure-go".
var versionShape = regexp.MustCompile(`^thumbnailed (\S+) \(commit ([0-9a-f]{7}(?:\+dirty)?|unknown)\) (go\S+) engine=(pure-go|vips \d+\.\d+\.\d+)\n$`)

// Issue 15: `thumbnailed version` (and --version, -v) through the binary:
// exit 0, one line of the documented shape, naming the Go that built it,
// the commit the build recorded (or "unknown" when it recorded none) and
// the engine; the version and commit stamped by -ldflags as the Makefile
// does; the same line in the "starting" record of a running process.
func TestVersionCommand(t *testing.T) {
	needProcesses(t)
	t.Parallel()
	is := is.New(t)
	info, err := buildinfo.ReadFile(binary)
	is.NoErr(err)
	commit := "unknown"
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		commit = rev[:7]
		if settings["vcs.modified"] == "true" {
			commit += "+dirty"
		}
	}
	engine := "pure-go"
	if strings.Contains(settings["-tags"], "vips") {
		engine = "vips" // and its version, checked by the shape
	}

	run := func(bin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no THUMBNAILED_* at all: version needs none
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %v: %v", bin, args, err)
		}
		return stdout.String(), stderr.String(), code
	}
	var line string
	for _, arg := range []string{"version", "--version", "-v"} {
		out, errOut, code := run(binary, arg)
		is.Equal(code, 0)    // exit 0
		is.Equal(errOut, "") // nothing on stderr
		m := versionShape.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("thumbnailed %s printed %q, not the documented shape", arg, out)
		}
		is.Equal(m[1], "dev")          // a plain go build is "dev"
		is.Equal(m[2], commit)         // the commit the build recorded
		is.Equal(m[3], info.GoVersion) // the Go that built it
		is.True(strings.HasPrefix(m[4], engine))
		if line == "" {
			line = out
		}
		is.Equal(out, line) // the three spellings print the same
	}
	t.Logf("thumbnailed version: %s", strings.TrimSpace(line))

	// Stamped as the Makefile does (only a link: the packages are built).
	stamped := filepath.Join(t.TempDir(), "thumbnailed-stamped")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-systemtest -X main.commit=abcdef1234567", "-o", stamped, "./cmd/thumbnailed")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with -ldflags: %v\n%s", err, out)
	}
	out, _, code := run(stamped, "version")
	is.Equal(code, 0)
	m := versionShape.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the stamped build printed %q, not the documented shape", out)
	}
	is.Equal(m[1], "v9.8.7-systemtest")
	is.Equal(m[2], "abcdef1") // the commit cut to 7 characters
	t.Logf("stamped: %s", strings.TrimSpace(out))

	// A misspelt command is refused (exit 1), saying so.
	out, errOut, code := run(binary, "versoin")
	is.Equal(code, 1)
	is.Equal(out, "")
	is.True(strings.Contains(errOut, `unknown role "versoin"`))

	// A running process logs the same line as it starts.
	api := startProcess(t, "api", "api", newEnv(t))
	started := ""
	for _, l := range api.Lines() {
		if l.str("msg") == "starting" {
			started = l.str("version")
		}
	}
	is.Equal(started+"\n", line)
}

// route is one route of server/routes.go.
type route struct {
	fn      string // the function that adds it: addRoutes or addOpsRoutes
	path    string
	methods []string
}

// routesOf reads the routes server/routes.go maps: every e.METHOD("path",
// ...) call, by path.
func routesOf(t *testing.T) map[string]*route {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "server", "routes.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	known := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	routes := map[string]*route{}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains(known, sel.Sel.Name) {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "e" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Fatalf("%s: a route whose path is not a literal: this test cannot walk it", fset.Position(call.Pos()))
			}
			path, _ := strconv.Unquote(lit.Value)
			rt := routes[path]
			if rt == nil {
				rt = &route{fn: fn.Name.Name, path: path}
				routes[path] = rt
			}
			rt.methods = append(rt.methods, sel.Sel.Name)
			return true
		})
	}
	return routes
}

// Issue 15: every route of server/routes.go, walked through the real
// binary, answers each method it does not serve with 405, an Allow header
// naming exactly the methods it does serve (and OPTIONS, which Echo
// answers), and problem+json with code method_not_allowed (no body for
// HEAD); with or without an API key, as the answer comes before auth. The
// routes every role serves are walked on a worker too.
func TestWrongMethodsAnswer405ThroughTheBinary(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	routes := routesOf(t)
	is.True(len(routes) >= 12)                                                                     // the walk found the routes
	is.Equal(sorted(routes["/v1/thumbnails/:id"].methods), []string{"DELETE", "GET"})              // e.g. the job
	is.Equal(sorted(routes["/v1/thumbnails/:id/image"].methods), []string{"GET", "HEAD"})          // its image
	is.Equal(routes["/v1/thumbnails/:id/deliveries/:channel/redeliver"].methods, []string{"POST"}) // a redelivery
	is.Equal(routes["/healthz"].fn, "addOpsRoutes")

	env, svc, _ := startKeyed(t, "all")
	w := startProcess(t, "worker", "worker", env)

	params := strings.NewReplacer(":id", "aaaaaaaaaaaaaaaaaaaaaaaaaa", ":name", "default", ":channel", "callback", "*", "app.js")
	tryMethods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, "BREW"}
	var paths []string
	for p := range routes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tried := 0
	for _, p := range paths {
		rt := routes[p]
		want := sorted(append([]string{http.MethodOptions}, rt.methods...))
		targets := []*process{svc}
		if rt.fn == "addOpsRoutes" {
			targets = append(targets, w)
		}
		for _, target := range targets {
			for _, method := range tryMethods {
				if slices.Contains(rt.methods, method) {
					continue
				}
				for _, client := range []*testapi.Client{target.API(), target.API().WithKey(apiKey)} {
					tried++
					resp := client.Do(t, method, params.Replace(p), nil, nil)
					where := method + " " + p + " on " + target.Name
					if resp.Status != http.StatusMethodNotAllowed {
						t.Errorf("%s: %d, want 405", where, resp.Status)
						continue
					}
					if got := allow(resp); !slices.Equal(got, want) {
						t.Errorf("%s: Allow %q, want %v", where, resp.Header.Get("Allow"), want)
					}
					if method == http.MethodHead {
						if len(resp.Body) != 0 {
							t.Errorf("%s: a body of %d bytes", where, len(resp.Body))
						}
						continue
					}
					if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
						t.Errorf("%s: Content-Type %q, not problem+json", where, ct)
						continue
					}
					if code := resp.Problem(t).Code; code != "method_not_allowed" {
						t.Errorf("%s: code %q, want method_not_allowed", where, code)
					}
				}
			}
			// OPTIONS answers with the same list.
			resp := target.API().Do(t, http.MethodOptions, params.Replace(p), nil, nil)
			if resp.Status != http.StatusNoContent || !slices.Equal(allow(resp), want) {
				t.Errorf("OPTIONS %s on %s: %d, Allow %q, want 204 and %v", p, target.Name, resp.Status, resp.Header.Get("Allow"), want)
			}
		}
	}
	t.Logf("%d wrong-method requests over %d routes of server/routes.go", tried, len(routes))
}

// allow is the Allow header's methods, sorted.
func allow(r testapi.Response) []string {
	var out []string
	for _, m := range strings.Split(r.Header.Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return sorted(out)
}

package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// version and commit are set at build time (Makefile, Dockerfile):
// -ldflags "-X main.version=v0.3.0 -X main.commit=1a2b3c4". A plain go build
// reads the commit from the module's build information.
var (
	version = "dev"
	commit  = ""
)

// versionLine is what `thumbnailed version` prints, e.g.
// "thumbnailed v0.3.0 (commit 1a2b3c4) go1.26.8 engine=vips 8.14.1".
func versionLine(engine thumbnail.Engine) string {
	rev, dirty := commit, false
	if info, ok := debug.ReadBuildInfo(); ok && rev == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	if dirty {
		rev += "+dirty"
	}
	if rev == "" {
		rev = "unknown"
	}
	engineName := "pure-go"
	if engine.Name() == "vips" {
		engineName = "vips " + engine.Version()
	}
	return fmt.Sprintf("thumbnailed %s (commit %s) %s engine=%s", version, rev, runtime.Version(), engineName)
}

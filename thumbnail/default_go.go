//go:build !vips

package thumbnail

// Default is the engine Make uses: in this build, the pure-Go one. Build with the
// vips tag for the libvips engine (engine_vips.go).
var Default Engine = goEngine{}

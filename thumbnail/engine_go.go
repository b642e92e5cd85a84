package thumbnail

import (
	"context"
	"runtime"
)

// goEngine decodes with the standard library and golang.org/x/image, resizes with
// nfnt/resize (Lanczos3) and encodes WebP with libwebp compiled to WebAssembly. It is
// Default without the vips build tag (default_go.go); the vips build keeps it too, so
// tests can hold the two engines side by side.
type goEngine struct{}

func (goEngine) Name() string    { return "go" }
func (goEngine) Version() string { return runtime.Version() }

func (goEngine) Accepts(f Format) bool {
	switch f {
	case FormatJPEG, FormatPNG, FormatGIF, FormatWebP:
		return true
	}
	return false
}

func (goEngine) Encodes(f Format) bool { return encodes(f) }

func (e goEngine) Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	return makeOne(ctx, e, src, spec)
}

func (e goEngine) MakeSet(ctx context.Context, src []byte, outputs []Output, maxPixels int64) (Set, error) {
	j := newJob(e, src, outputs, maxPixels)
	if err := runJob(ctx, j, goPipeline, goOutputPipeline); err != nil {
		return Set{}, err
	}
	return j.set(), nil
}

package thumbnail

import (
	"context"
	"image"
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

func (goEngine) Encodes(f Format) bool {
	switch f {
	case FormatJPEG, FormatPNG, FormatWebP:
		return true
	}
	return false
}

func (e goEngine) Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	j := &job{engine: e, src: src, spec: spec}
	if err := runPipeline(ctx, j, goPipeline); err != nil {
		return Result{}, err
	}
	size := j.img.(*image.RGBA).Rect.Size()
	return Result{
		Data:        j.out,
		ContentType: contentTypes[j.spec.Format],
		Format:      j.spec.Format,
		Width:       size.X,
		Height:      size.Y,
		Engine:      e.Name() + "/" + e.Version(),
		Timings:     j.timings,
	}, nil
}

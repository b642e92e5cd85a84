package thumbnail

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"
)

func TestSpecValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		spec    Spec
		problem string // "" when valid; else a part of the message
	}{
		{"width only", Spec{Width: 256}, ""},
		{"height only", Spec{Height: 256}, ""},
		{"everything", Spec{Width: 10, Height: 20, Fit: FitCover, Enlarge: true, Format: FormatWebP, Quality: 100, MaxPixels: 1}, ""},
		{"largest", Spec{Width: MaxDimension, Height: MaxDimension}, ""},
		{"no size", Spec{}, "at least one of width and height must be given"},
		{"negative width", Spec{Width: -1, Height: 5}, "width must be between 1 and 16383"},
		{"huge height", Spec{Height: MaxDimension + 1}, "height must be between 1 and 16383"},
		{"bad fit", Spec{Width: 5, Fit: "stretch"}, `fit must be contain, cover or fill, not "stretch"`},
		{"gif output", Spec{Width: 5, Format: FormatGIF}, `format must be jpeg, png or webp, not "gif"`},
		{"quality too high", Spec{Width: 5, Quality: 101}, "quality must be between 1 and 100, not 101"},
		{"negative quality", Spec{Width: 5, Quality: -3}, "quality must be between 1 and 100"},
		{"negative limit", Spec{Width: 5, MaxPixels: -1}, "the pixel limit must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			err := c.spec.Validate()
			if c.problem == "" {
				is.NoErr(err)
				return
			}
			is.Equal(CodeOf(err), CodeInvalidSpec)
			is.True(strings.Contains(err.Error(), c.problem)) // the message names the problem
		})
	}
}

func TestSpecValidateReportsEveryProblemAtOnce(t *testing.T) {
	is := is.New(t)
	err := Spec{Width: -1, Fit: "x", Quality: 200}.Validate()
	var e *Error
	is.True(errors.As(err, &e))
	is.True(strings.Contains(e.Message, "width"))
	is.True(strings.Contains(e.Message, "fit"))
	is.True(strings.Contains(e.Message, "quality"))
}

func TestSpecDefaults(t *testing.T) {
	is := is.New(t)
	s := Spec{Width: 100}.withDefaults()
	is.Equal(s, Spec{Width: 100, Fit: FitContain, Format: FormatJPEG, Quality: 80, MaxPixels: 50_000_000, Gravity: GravityCenter})
}

func TestErrorCarriesCodeMessageAndCause(t *testing.T) {
	is := is.New(t)
	cause := errors.New("png: invalid format: invalid checksum")
	var err error = newError(CodeCorruptImage, cause, "the file is a damaged %s image", "PNG")
	is.Equal(err.Error(), "the file is a damaged PNG image: png: invalid format: invalid checksum")
	is.True(errors.Is(err, cause)) // Unwrap reaches the cause
	is.Equal(CodeOf(err), CodeCorruptImage)
	is.Equal(CodeOf(errors.Join(errors.New("job 7"), err)), CodeCorruptImage) // found when wrapped
	is.Equal(CodeOf(cause), "")
	is.Equal(CodeOf(nil), "")
	is.Equal((&Error{Code: CodeTimeout, Message: "too slow"}).Error(), "too slow")
}

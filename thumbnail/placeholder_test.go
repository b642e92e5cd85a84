package thumbnail

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/bbrks/go-blurhash"
	"github.com/matryer/is"
)

// The placeholder's BlurHash decodes (with the library that made it) to a picture of
// the same mean colour as the output it was made from (the smallest), measured in
// linear light as BlurHash averages.
func TestPlaceholderBlurHashLooksLikeTheOutput(t *testing.T) {
	sources := []string{"photos/Storm.jpg", "photos/canon5d-adobergb-400x400.jpg", "photos/concert-gray.jpg",
		"formats/webp/goimage-yellow_rose.lossy-with-alpha.webp", "exif-orientation/recurser-Landscape_6.jpg"}
	for _, file := range sources {
		t.Run(file, func(t *testing.T) {
			is := is.New(t)
			set, err := MakeSet(context.Background(), readTestdata(t, file), []Output{
				{Name: "large", Width: 300, Format: FormatJPEG},
				{Name: "smallest", Width: 80, Height: 80, Fit: FitCover, Format: FormatPNG},
				{Name: "middle", Width: 150, Format: FormatWebP},
			}, 0)
			is.NoErr(err)
			hash := set.Placeholder.BlurHash
			x, y, err := blurhash.Components(hash)
			is.NoErr(err)
			is.Equal([2]int{x, y}, [2]int{4, 3})
			decoded, err := blurhash.Decode(hash, 32, 32, 1)
			is.NoErr(err)
			output := decodePNG(t, set.Outputs[1].Data)
			flattenOnWhite(output) // as the placeholder sees it
			got, want := meanLinear(toRGBA(decoded)), meanLinear(output)
			d := distance(got, want)
			t.Logf("%s: mean %.0f, the output's %.0f (distance %.1f)", hash, got, want, d)
			// The cosines of a BlurHash dip below black in a dark, contrasty picture and
			// are clipped there, which lightens it a little: 8.2 for concert-gray.jpg.
			is.True(d < 10) // out of 255 a channel
		})
	}
}

// meanLinear is an image's mean colour averaged in linear light, in sRGB units.
func meanLinear(img *image.RGBA) [3]float64 {
	var sum [3]float64
	for i := 0; i < len(img.Pix); i += 4 {
		for c := range 3 {
			sum[c] += linear(float64(img.Pix[i+c]))
		}
	}
	n := float64(len(img.Pix) / 4)
	var mean [3]float64
	for c := range 3 {
		v := sum[c] / n
		if v <= 0.0031308 {
			mean[c] = 255 * 12.92 * v
		} else {
			mean[c] = 255 * (1.055*math.Pow(v, 1/2.4) - 0.055)
		}
	}
	return mean
}

func distance(a, b [3]float64) float64 {
	return math.Sqrt((a[0]-b[0])*(a[0]-b[0]) + (a[1]-b[1])*(a[1]-b[1]) + (a[2]-b[2])*(a[2]-b[2]))
}

// The dominant colour of a flat picture is its colour, exactly; of a picture that is
// 70 % one colour and 30 % another, the first, whichever side it is on.
func TestPlaceholderDominantColor(t *testing.T) {
	solid := func(c color.RGBA) *image.RGBA {
		m := image.NewRGBA(image.Rect(0, 0, 300, 200))
		fill(m, m.Rect, c)
		return m
	}
	split := func(first, second color.RGBA, share float64, across bool) *image.RGBA {
		m := solid(second)
		r := image.Rect(0, 0, int(share*300), 200)
		if !across {
			r = image.Rect(0, 0, 300, int(share*200))
		}
		fill(m, r, first)
		return m
	}
	red, blue, teal := color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}, color.RGBA{0x12, 0x80, 0x7f, 255}
	for _, c := range []struct {
		name string
		img  *image.RGBA
		want string
	}{
		{"red", solid(red), "#ff0000"},
		{"green", solid(color.RGBA{0, 255, 0, 255}), "#00ff00"},
		{"blue", solid(blue), "#0000ff"},
		{"white", solid(color.RGBA{255, 255, 255, 255}), "#ffffff"},
		{"black", solid(color.RGBA{0, 0, 0, 255}), "#000000"},
		{"brown", solid(color.RGBA{0x7a, 0x5c, 0x3e, 255}), "#7a5c3e"},
		{"70 % red, left", split(red, blue, 0.7, true), "#ff0000"},
		{"70 % blue, left", split(blue, red, 0.7, true), "#0000ff"},
		{"30 % red, left", split(red, teal, 0.3, true), "#12807f"},
		{"70 % teal, top", split(teal, red, 0.7, false), "#12807f"},
		{"transparent is white", image.NewRGBA(image.Rect(0, 0, 50, 50)), "#ffffff"},
	} {
		for _, format := range []Format{FormatJPEG, FormatPNG} {
			t.Run(fmt.Sprintf("%s/%s", c.name, format), func(t *testing.T) {
				is := is.New(t)
				set, err := MakeSet(context.Background(), encodePNG(t, c.img), []Output{
					{Width: 120, Format: format}, {Width: 64, Height: 64, Fit: FitFill, Format: format},
				}, 0)
				is.NoErr(err)
				is.Equal(set.Placeholder.DominantColor, c.want)
			})
		}
	}
}

func TestPlaceholderCopyIsSmallAndFlat(t *testing.T) {
	is := is.New(t)
	big := image.NewRGBA(image.Rect(0, 0, 1024, 300))
	small := placeholderCopy(big)
	is.True(small.Rect.Dx() <= 2*placeholderSide && small.Rect.Dx() >= placeholderSide)
	is.Equal(small.RGBAAt(0, 0), color.RGBA{255, 255, 255, 255}) // transparent onto white
	is.Equal(big.RGBAAt(0, 0), color.RGBA{})                     // the output itself is untouched
	thin := image.NewRGBA(image.Rect(0, 0, 5000, 2))
	is.Equal(placeholderCopy(thin).Rect.Dy(), 1) // never no pixels at all
	tiny := image.NewRGBA(image.Rect(0, 0, 1, 1))
	p := makePlaceholder(tiny)
	is.Equal(p.DominantColor, "#ffffff")
	is.Equal(len(p.BlurHash), 28)
}

// The package's own BlurHash encoder writes what the library (an independent
// implementation) writes for the same pixels. The library rounds channels darker
// than 0.0031308 in linear light down (it multiplies by 0.5 where the reference adds
// it), so the pictures here have no such dark mean.
func TestBlurHashMatchesTheLibrary(t *testing.T) {
	set, err := MakeSet(context.Background(), readTestdata(t, "photos/Storm.jpg"), []Output{{Width: 90, Format: FormatPNG}}, 0)
	is.New(t).NoErr(err)
	photo := decodePNG(t, set.Outputs[0].Data)
	flat := image.NewRGBA(image.Rect(0, 0, 20, 10))
	fill(flat, flat.Rect, color.RGBA{0x7a, 0x5c, 0x3e, 255})
	for name, img := range map[string]*image.RGBA{"photo": photo, "flat": flat, "objects": withObject(64, 48, image.Rect(10, 10, 40, 30))} {
		for _, components := range [][2]int{{4, 3}, {1, 1}, {9, 9}, {3, 5}} {
			want, err := blurhash.Encode(components[0], components[1], img)
			is.New(t).NoErr(err)
			got := blurHash(img, components[0], components[1])
			if got != want {
				t.Errorf("%s, %v components: %s, the library %s", name, components, got, want)
			}
		}
	}
}

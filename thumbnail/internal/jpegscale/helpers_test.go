package jpegscale

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/thumbnailed/thumbnailed/thumbnail/internal/testcorpus"
)

const testdata = "../../testdata/"

// jpegRows returns the manifest's rows about JPEG files, or about files named
// .jpg that are not JPEGs (which must be refused).
func jpegRows(t testing.TB) []testcorpus.Row {
	t.Helper()
	var rows []testcorpus.Row
	for _, row := range testcorpus.Read(t, testdata) {
		ext := strings.ToLower(filepath.Ext(row.File))
		if strings.HasPrefix(row.Format, "JPEG") && !strings.HasPrefix(row.Format, "JPEG 2000") ||
			ext == ".jpg" || ext == ".jpeg" {
			rows = append(rows, row)
		}
	}
	return rows
}

var (
	fileCache   sync.Map // path -> []byte
	stdlibCache sync.Map // path -> *stdlibResult
)

func readTestdata(t testing.TB, file string) []byte {
	t.Helper()
	if b, ok := fileCache.Load(file); ok {
		return b.([]byte)
	}
	b, err := os.ReadFile(testdata + file)
	if err != nil {
		t.Fatal(err)
	}
	fileCache.Store(file, b)
	return b
}

type stdlibResult struct {
	once sync.Once
	img  image.Image
	err  error
}

// stdlibDecode returns image/jpeg's decoding of a corpus file, decoded once
// for all the tests.
func stdlibDecode(t testing.TB, file string) (image.Image, error) {
	src := readTestdata(t, file)
	r, _ := stdlibCache.LoadOrStore(file, &stdlibResult{})
	res := r.(*stdlibResult)
	res.once.Do(func() { res.img, res.err = jpeg.Decode(bytes.NewReader(src)) })
	return res.img, res.err
}

// photoFiles are the corpus photos.
func photoFiles(t testing.TB) []string {
	var files []string
	for _, row := range jpegRows(t) {
		if row.Category == "photo" {
			files = append(files, row.File)
		}
	}
	if len(files) < 8 {
		t.Fatalf("only %d photos in the manifest", len(files))
	}
	return files
}

// samePixels reports how a and b differ: "" if they have the same type,
// bounds and pixels (up to tolerance in every sample).
func samePixels(a, b image.Image, tolerance int) string {
	if fmt.Sprintf("%T", a) != fmt.Sprintf("%T", b) {
		return fmt.Sprintf("type %T, want %T", a, b)
	}
	if a.Bounds() != b.Bounds() {
		return fmt.Sprintf("bounds %v, want %v", a.Bounds(), b.Bounds())
	}
	r := a.Bounds()
	type plane struct {
		name       string
		pa, pb     []uint8
		sa, sb     int
		w, h, bpp  int
		offA, offB int
	}
	var planes []plane
	switch a := a.(type) {
	case *image.YCbCr:
		b := b.(*image.YCbCr)
		if a.SubsampleRatio != b.SubsampleRatio {
			return fmt.Sprintf("subsampling %v, want %v", a.SubsampleRatio, b.SubsampleRatio)
		}
		cw, ch := chromaSize(r, a.SubsampleRatio)
		planes = []plane{
			{"Y", a.Y, b.Y, a.YStride, b.YStride, r.Dx(), r.Dy(), 1, a.YOffset(r.Min.X, r.Min.Y), b.YOffset(r.Min.X, r.Min.Y)},
			{"Cb", a.Cb, b.Cb, a.CStride, b.CStride, cw, ch, 1, a.COffset(r.Min.X, r.Min.Y), b.COffset(r.Min.X, r.Min.Y)},
			{"Cr", a.Cr, b.Cr, a.CStride, b.CStride, cw, ch, 1, a.COffset(r.Min.X, r.Min.Y), b.COffset(r.Min.X, r.Min.Y)},
		}
	case *image.Gray:
		b := b.(*image.Gray)
		planes = []plane{{"Y", a.Pix, b.Pix, a.Stride, b.Stride, r.Dx(), r.Dy(), 1, a.PixOffset(r.Min.X, r.Min.Y), b.PixOffset(r.Min.X, r.Min.Y)}}
	case *image.CMYK:
		b := b.(*image.CMYK)
		planes = []plane{{"CMYK", a.Pix, b.Pix, a.Stride, b.Stride, r.Dx(), r.Dy(), 4, a.PixOffset(r.Min.X, r.Min.Y), b.PixOffset(r.Min.X, r.Min.Y)}}
	case *image.RGBA:
		b := b.(*image.RGBA)
		planes = []plane{{"RGBA", a.Pix, b.Pix, a.Stride, b.Stride, r.Dx(), r.Dy(), 4, a.PixOffset(r.Min.X, r.Min.Y), b.PixOffset(r.Min.X, r.Min.Y)}}
	default:
		return fmt.Sprintf("unexpected type %T", a)
	}
	for _, p := range planes {
		for y := 0; y < p.h; y++ {
			ra := p.pa[p.offA+y*p.sa:][:p.w*p.bpp]
			rb := p.pb[p.offB+y*p.sb:][:p.w*p.bpp]
			for x := range ra {
				if d := int(ra[x]) - int(rb[x]); d > tolerance || d < -tolerance {
					return fmt.Sprintf("%s sample (%d, %d) is %d, want %d", p.name, x/p.bpp, y, ra[x], rb[x])
				}
			}
		}
	}
	return ""
}

// chromaSize is the size of the chroma planes of a YCbCr image with bounds r
// (at the origin).
func chromaSize(r image.Rectangle, ratio image.YCbCrSubsampleRatio) (w, h int) {
	w, h = r.Dx(), r.Dy()
	switch ratio {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// rgbImage is an image as 8-bit R, G, B samples.
type rgbImage struct {
	pix  []uint8
	w, h int
}

// toRGB converts the decoders' result types to RGB, the way their At methods
// do (but faster).
func toRGB(m image.Image) rgbImage {
	r := m.Bounds()
	out := rgbImage{make([]uint8, 3*r.Dx()*r.Dy()), r.Dx(), r.Dy()}
	i := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		switch m := m.(type) {
		case *image.YCbCr:
			for x := r.Min.X; x < r.Max.X; x++ {
				yi, ci := m.YOffset(x, y), m.COffset(x, y)
				out.pix[i], out.pix[i+1], out.pix[i+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				i += 3
			}
		case *image.Gray:
			for x := r.Min.X; x < r.Max.X; x++ {
				g := m.Pix[m.PixOffset(x, y)]
				out.pix[i], out.pix[i+1], out.pix[i+2] = g, g, g
				i += 3
			}
		case *image.CMYK:
			for x := r.Min.X; x < r.Max.X; x++ {
				p := m.Pix[m.PixOffset(x, y):]
				out.pix[i], out.pix[i+1], out.pix[i+2] = color.CMYKToRGB(p[0], p[1], p[2], p[3])
				i += 3
			}
		default:
			for x := r.Min.X; x < r.Max.X; x++ {
				cr, cg, cb, _ := m.At(x, y).RGBA()
				out.pix[i], out.pix[i+1], out.pix[i+2] = uint8(cr>>8), uint8(cg>>8), uint8(cb>>8)
				i += 3
			}
		}
	}
	return out
}

// boxShrink shrinks m by denom with a box filter, to ceil(w/denom) x
// ceil(h/denom): each pixel is the average of the pixels it covers (fewer at
// the right and bottom edges).
func boxShrink(m rgbImage, denom int) rgbImage {
	w, h := (m.w+denom-1)/denom, (m.h+denom-1)/denom
	out := rgbImage{make([]uint8, 3*w*h), w, h}
	for oy := 0; oy < h; oy++ {
		for ox := 0; ox < w; ox++ {
			var sum [3]int
			n := 0
			for y := oy * denom; y < min((oy+1)*denom, m.h); y++ {
				for x := ox * denom; x < min((ox+1)*denom, m.w); x++ {
					p := m.pix[3*(y*m.w+x):]
					sum[0] += int(p[0])
					sum[1] += int(p[1])
					sum[2] += int(p[2])
					n++
				}
			}
			for c := range sum {
				out.pix[3*(oy*w+ox)+c] = uint8((sum[c] + n/2) / n)
			}
		}
	}
	return out
}

// psnr is the peak signal-to-noise ratio of b against a, in dB (+Inf if they
// are identical).
func psnr(a, b rgbImage) float64 {
	if a.w != b.w || a.h != b.h {
		panic(fmt.Sprintf("psnr of %dx%d and %dx%d images", a.w, a.h, b.w, b.h))
	}
	var sse float64
	for i := range a.pix {
		d := float64(a.pix[i]) - float64(b.pix[i])
		sse += d * d
	}
	if sse == 0 {
		return math.Inf(1)
	}
	mse := sse / float64(len(a.pix))
	return 10 * math.Log10(255*255/mse)
}

// stats returns the minimum and median of xs.
func stats(xs []float64) (lo, median float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[0], s[len(s)/2]
}

// samplePlane is one plane of samples: a channel of a decoded image, bpp
// bytes apart.
type samplePlane struct {
	name string
	pix  []uint8
	w, h int
}

// planesOf returns the sample planes of a decoded image: Y, Cb and Cr at
// their own resolution, or the channels of Gray, CMYK and RGBA images.
func planesOf(m image.Image) []samplePlane {
	r := m.Bounds()
	extract := func(name string, pix []uint8, stride, off, w, h, bpp, c int) samplePlane {
		p := samplePlane{name, make([]uint8, w*h), w, h}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p.pix[y*w+x] = pix[off+y*stride+x*bpp+c]
			}
		}
		return p
	}
	switch m := m.(type) {
	case *image.YCbCr:
		cw, ch := chromaSize(r, m.SubsampleRatio)
		return []samplePlane{
			extract("Y", m.Y, m.YStride, m.YOffset(r.Min.X, r.Min.Y), r.Dx(), r.Dy(), 1, 0),
			extract("Cb", m.Cb, m.CStride, m.COffset(r.Min.X, r.Min.Y), cw, ch, 1, 0),
			extract("Cr", m.Cr, m.CStride, m.COffset(r.Min.X, r.Min.Y), cw, ch, 1, 0),
		}
	case *image.Gray:
		return []samplePlane{extract("Y", m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), r.Dx(), r.Dy(), 1, 0)}
	case *image.CMYK:
		var ps []samplePlane
		for c, name := range []string{"C", "M", "Y", "K"} {
			ps = append(ps, extract(name, m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), r.Dx(), r.Dy(), 4, c))
		}
		return ps
	case *image.RGBA:
		var ps []samplePlane
		for c, name := range []string{"R", "G", "B"} {
			ps = append(ps, extract(name, m.Pix, m.Stride, m.PixOffset(r.Min.X, r.Min.Y), r.Dx(), r.Dy(), 4, c))
		}
		return ps
	}
	panic(fmt.Sprintf("unexpected type %T", m))
}

// planePSNR compares, plane by plane, a scaled decoding with the box-filtered
// full-size one, over the scaled samples whose box lies inside the image (at
// the right and bottom edges, a scaled sample also averages the padding of
// the last blocks, which the box filter leaves out). It returns the lowest
// PSNR of the planes, and the largest difference of a sample.
func planePSNR(scaled, full image.Image, denom int) (lowest float64, maxDiff int) {
	ps, pf := planesOf(scaled), planesOf(full)
	lowest = math.Inf(1)
	for i := range ps {
		// The box filter of a plane, as a gray "RGB" image.
		f := rgbImage{make([]uint8, 3*pf[i].w*pf[i].h), pf[i].w, pf[i].h}
		for j, v := range pf[i].pix {
			f.pix[3*j], f.pix[3*j+1], f.pix[3*j+2] = v, v, v
		}
		f = boxShrink(f, denom)
		if f.w != ps[i].w || f.h != ps[i].h {
			panic(fmt.Sprintf("plane %s: %dx%d, box-filtered %dx%d", ps[i].name, ps[i].w, ps[i].h, f.w, f.h))
		}
		// The whole boxes.
		w, h := pf[i].w/denom, pf[i].h/denom
		if w == 0 || h == 0 {
			continue
		}
		a := rgbImage{make([]uint8, 3*w*h), w, h}
		b := rgbImage{make([]uint8, 3*w*h), w, h}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := ps[i].pix[y*ps[i].w+x]
				a.pix[3*(y*w+x)], a.pix[3*(y*w+x)+1], a.pix[3*(y*w+x)+2] = v, v, v
				copy(b.pix[3*(y*w+x):3*(y*w+x)+3], f.pix[3*(y*f.w+x):])
				d := int(v) - int(f.pix[3*(y*f.w+x)])
				maxDiff = max(maxDiff, d, -d)
			}
		}
		lowest = min(lowest, psnr(b, a))
	}
	return lowest, maxDiff
}

// shrinkImage shrinks a decoded image by denom with a box filter, keeping its
// type: for an *image.YCbCr, each plane is shrunk, so that the result has the
// same chroma subsampling, as a scaled decoding does.
func shrinkImage(m image.Image, denom int) image.Image {
	r := m.Bounds()
	sr := image.Rect(0, 0, (r.Dx()+denom-1)/denom, (r.Dy()+denom-1)/denom)
	shrink := func(dst []uint8, dstStride int, src []uint8, srcStride, w, h, bpp int) {
		for oy := 0; oy < (h+denom-1)/denom; oy++ {
			for ox := 0; ox < (w+denom-1)/denom; ox++ {
				for c := 0; c < bpp; c++ {
					sum, n := 0, 0
					for y := oy * denom; y < min((oy+1)*denom, h); y++ {
						for x := ox * denom; x < min((ox+1)*denom, w); x++ {
							sum += int(src[y*srcStride+x*bpp+c])
							n++
						}
					}
					dst[oy*dstStride+ox*bpp+c] = uint8((sum + n/2) / n)
				}
			}
		}
	}
	switch m := m.(type) {
	case *image.YCbCr:
		out := image.NewYCbCr(sr, m.SubsampleRatio)
		cw, ch := chromaSize(r, m.SubsampleRatio)
		shrink(out.Y, out.YStride, m.Y[m.YOffset(r.Min.X, r.Min.Y):], m.YStride, r.Dx(), r.Dy(), 1)
		shrink(out.Cb, out.CStride, m.Cb[m.COffset(r.Min.X, r.Min.Y):], m.CStride, cw, ch, 1)
		shrink(out.Cr, out.CStride, m.Cr[m.COffset(r.Min.X, r.Min.Y):], m.CStride, cw, ch, 1)
		return out
	case *image.Gray:
		out := image.NewGray(sr)
		shrink(out.Pix, out.Stride, m.Pix[m.PixOffset(r.Min.X, r.Min.Y):], m.Stride, r.Dx(), r.Dy(), 1)
		return out
	case *image.CMYK:
		out := image.NewCMYK(sr)
		shrink(out.Pix, out.Stride, m.Pix[m.PixOffset(r.Min.X, r.Min.Y):], m.Stride, r.Dx(), r.Dy(), 4)
		return out
	case *image.RGBA:
		out := image.NewRGBA(sr)
		shrink(out.Pix, out.Stride, m.Pix[m.PixOffset(r.Min.X, r.Min.Y):], m.Stride, r.Dx(), r.Dy(), 4)
		return out
	}
	panic(fmt.Sprintf("unexpected type %T", m))
}

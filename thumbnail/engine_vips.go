//go:build vips

package thumbnail

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"os"
	"strings"
	"time"
)

// Default is the engine Make uses: in this build, libvips.
var Default Engine = vipsEngine{}

func init() {
	if err := startVips(); err != nil {
		panic(err) // a build with the vips tag and a broken libvips must not start
	}
}

// vipsEngine makes thumbnails with libvips: it decodes a job's source once, with
// vips_thumbnail_buffer at the size the largest output needs (a JPEG is decoded at
// 1/2, 1/4 or 1/8 scale inside libjpeg: shrink-on-load; WebP at the scale asked; only
// the first frame or page), upright, an embedded ICC profile converted to sRGB, and
// renders that into memory. Every output is then resized (Lanczos3), cropped where
// its gravity says (attention and entropy measured as in the pure-Go engine, on a
// small copy of the resized pixels), converted and
// flattened from that one image, and leaves with no metadata. The size is still read
// and guarded by this package, from the header, before libvips sees the bytes. One
// libvips thread per job, no operation cache (vips.go); measured in VIPS_RESULTS.txt
// and BENCHMARKS.md.
type vipsEngine struct{}

func (vipsEngine) Name() string    { return "vips" }
func (vipsEngine) Version() string { return vipsVersion() }

func (vipsEngine) Accepts(f Format) bool {
	switch f {
	case FormatJPEG, FormatPNG, FormatGIF, FormatWebP, FormatTIFF, FormatAVIF, FormatHEIC:
		return true
	}
	return false
}

func (vipsEngine) Encodes(f Format) bool { return encodes(f) }

func (e vipsEngine) Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	return makeOne(ctx, e, src, spec)
}

func (e vipsEngine) MakeSet(ctx context.Context, src []byte, outputs []Output, maxPixels int64) (Set, error) {
	v := &vipsJob{job: newJob(e, src, outputs, maxPixels), source: &vipsSource{}}
	defer v.finish()
	// A deadline that passes mid-job kills the running libvips render rather than
	// waiting for it; the steps then answer timeout.
	stop := context.AfterFunc(ctx, v.source.kill)
	defer stop()
	if err := runJob(ctx, v.job, v.pipeline(ctx), v.outputPipeline(ctx)); err != nil {
		return Set{}, err
	}
	return v.set(), nil
}

// vipsJob is the libvips side of one job.
type vipsJob struct {
	*job
	source  *vipsSource
	vips    vipsHeader // the header as libvips read it
	decoded *vipsImage // the source, decoded once, upright, in memory
	current *vipsImage // the output being made, as far as it has got
}

// pipeline is the libvips engine, top to bottom: the part that runs once per job.
// The first steps are the pure-Go engine's: nothing reaches libvips before the header
// has passed the pixel guard. libvips then reads the header again (lazily: no pixels)
// to say how it will turn the image, so that the geometry is planned by the same code
// as the Go engine's and both give the same size to the pixel.
func (v *vipsJob) pipeline(ctx context.Context) []step {
	return []step{
		{"check the outputs", checkOutputs, StagePrepare},
		{"read the header", readHeaderStep, StagePrepare}, // sniff the format, then its dimensions
		{"guard the pixel count", guardPixels, StagePrepare},
		{"open with libvips", v.open, StagePrepare}, // the header again, and the orientation
		{"plan the geometry", planGeometryStep, StagePrepare},
		{"decode", v.decode(ctx), StageDecode}, // once: shrink-on-load to the largest output, upright, sRGB
	}
}

// outputPipeline then runs for each output in turn, from the decoded image.
func (v *vipsJob) outputPipeline(ctx context.Context) []outputStep {
	return []outputStep{
		{"resize", v.resize, StageResize},
		{"crop", v.crop(ctx), StageResize}, // where the gravity says
		{"convert, flatten and render", v.render(ctx), StageResize},
		{"make the placeholder", v.placeholder, StagePlaceholder}, // from the smallest output only
		{"encode", v.save, StageEncode},
	}
}

// vipsLoaders is the libvips loader each sniffed format must be opened with.
var vipsLoaders = map[Format]string{
	FormatJPEG: "jpegload", FormatPNG: "pngload", FormatGIF: "gifload", FormatWebP: "webpload",
	FormatTIFF: "tiffload", FormatAVIF: "heifload", FormatHEIC: "heifload",
}

func (v *vipsJob) open(*job) error {
	name := formatNames[v.header.Format]
	if v.header.Format == FormatPNG && !pngHasEnd(v.src) {
		// Cut short after its pixel data: libpng stops reading once it has the rows
		// and never notices. The Go decoder refuses such a file, and so does this.
		return newError(CodeCorruptImage, nil, "the file is a truncated PNG image")
	}
	src := v.src
	if v.header.Format == FormatPNG {
		src = pngWithoutText(src)
	}
	if v.header.Format == FormatAVIF && string(src[8:12]) == "avis" && hasBrand(src, "avif") {
		// An AVIF sequence that also holds a still primary image, as the "avif" brand
		// promises: libvips knows HEIF files by their major brand and not "avis", so
		// it is told "avif" instead, and reads that primary image.
		src = bytes.Clone(src)
		copy(src[8:12], "avif")
	}
	v.source.hold(src)
	h, err := v.source.header()
	v.vips = h
	if err != nil {
		return newError(CodeCorruptImage, err, "the file is a damaged %s image", name)
	}
	if !strings.HasPrefix(h.Loader, vipsLoaders[v.header.Format]) {
		return newError(CodeCorruptImage, nil, "the file looks like a %s image but libvips reads it with %s", name, h.Loader)
	}
	// Every size decision so far was made on the header's word: libvips must not
	// see more pixels than were guarded. (HEIF's clean aperture may see fewer.)
	if int64(h.Width)*int64(h.Height) > int64(v.header.Width)*int64(v.header.Height) {
		return newError(CodeCorruptImage, nil, "the %s image decodes to %dx%d pixels but its header says %dx%d",
			name, h.Width, h.Height, v.header.Width, v.header.Height)
	}
	v.header.Width, v.header.Height = h.Width, h.Height
	v.orientation = 1
	if h.Orientation >= 1 && h.Orientation <= 8 {
		v.orientation = h.Orientation
	}
	return nil
}

// decode decodes the source once, at the size decodeSize picks for the outputs, and
// renders it into memory: the only time libvips reads the source's pixels.
func (v *vipsJob) decode(ctx context.Context) func(*job) error {
	return func(*job) error {
		scales := make([]image.Point, len(v.outputs))
		for i, o := range v.outputs {
			scales[i] = o.geometry.Scale
		}
		decodes.Add(1)
		lazy, err := v.source.load(v.vips, decodeSize(scales, image.Pt(v.upright())))
		if err != nil {
			return v.failed(ctx, err, "the file is a damaged %s image")
		}
		defer lazy.close() // the decoder and its buffers go once the pixels are in memory
		v.decoded, err = v.source.render(lazy)
		if err != nil {
			return v.failed(ctx, err, "the file is a damaged or truncated %s image")
		}
		return nil
	}
}

func (v *vipsJob) resize(_ *job, o *output) (err error) {
	v.setCurrent(nil)
	resized, err := v.decoded.resize(o.geometry.Scale)
	if err != nil {
		return newError(CodeCorruptImage, err, "the thumbnail could not be resized")
	}
	v.setCurrent(resized)
	return nil
}

// crop places the output's crop. attention and entropy look at the resized pixels,
// so those are rendered first, and measured on a small copy of them in Go. A flat
// image keeps the centre crop (flatDeviation).
func (v *vipsJob) crop(ctx context.Context) func(*job, *output) error {
	return func(_ *job, o *output) error {
		var err error
		o.geometry.Crop = cropFor(o, func() image.Rectangle {
			var resized *vipsImage
			if resized, err = v.source.render(v.current); err != nil {
				err = v.failed(ctx, err, "the %s image could not be resized")
				return o.geometry.Crop
			}
			v.setCurrent(resized)
			// The measure is the pure-Go engine's, on a copy of at most
			// analysisSide pixels: libvips's own smartcrop costs ~9-18 ms of
			// small operations on any image, a third of a whole job.
			k := analysisShrink(resized.size())
			var lazy, small *vipsImage
			if lazy, err = resized.analysisPixels(k); err != nil {
				return o.geometry.Crop
			}
			defer lazy.close()
			if small, err = v.source.render(lazy); err != nil {
				return o.geometry.Crop
			}
			defer small.close()
			var img *image.RGBA
			if img, err = small.pixels(); err != nil {
				return o.geometry.Crop
			}
			// vips_shrink starts its blocks at the image's corner.
			return interestCrop(img, k, image.Point{}, o.geometry, o.spec.Gravity)
		})
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return err
			}
			return newError(CodeCorruptImage, err, "the thumbnail could not be cropped")
		}
		return nil
	}
}

// render sets up the rest of the output and renders it into memory.
func (v *vipsJob) render(ctx context.Context) func(*job, *output) error {
	return func(_ *job, o *output) error {
		finished, err := v.current.finish(o.geometry.Crop, o.spec.Format == FormatJPEG)
		if err != nil {
			return newError(CodeCorruptImage, err, "the thumbnail could not be made")
		}
		defer finished.close()
		rendered, err := v.source.render(finished)
		if err != nil {
			return v.failed(ctx, err, "the %s image could not be made into a thumbnail")
		}
		v.setCurrent(rendered)
		return nil
	}
}

// placeholder makes the job's placeholder from the smallest output's pixels, before
// they are encoded: flattened and shrunk in libvips, then copied into Go memory.
func (v *vipsJob) placeholder(j *job, o *output) error {
	if o != &j.outputs[j.smallest] {
		return nil
	}
	failed := func(err error) error { return newError(CodeCorruptImage, err, "the placeholder could not be computed") }
	lazy, err := v.current.placeholderPixels()
	if err != nil {
		return failed(err)
	}
	defer lazy.close()
	small, err := v.source.render(lazy)
	if err != nil {
		return failed(err)
	}
	defer small.close()
	img, err := small.pixels()
	if err != nil {
		return failed(err)
	}
	j.placeholder = makePlaceholder(img)
	return nil
}

func (v *vipsJob) save(_ *job, o *output) error {
	start := time.Now()
	out, err := v.current.save(o.spec.Format, o.spec.Quality)
	if err != nil {
		return newError(CodeCorruptImage, err, "the thumbnail could not be encoded as %s", formatNames[o.spec.Format])
	}
	if o.spec.Format == FormatWebP {
		out = stripWebP(out)
	}
	o.data = out
	o.encodeTime = time.Since(start)
	v.setCurrent(nil) // done with: the next output may use the memory
	return nil
}

// setCurrent replaces the output's image, dropping the one it had.
func (v *vipsJob) setCurrent(m *vipsImage) {
	if v.current != nil {
		v.current.close()
	}
	v.current = m
}

// failed is the error of a libvips step: timeout once the job's deadline has passed
// (the render was killed), else a damaged source, in the words given (with %s for
// the format's name).
func (v *vipsJob) failed(ctx context.Context, err error, message string) error {
	if ctx.Err() != nil {
		return errTimeout(ctx.Err())
	}
	return newError(CodeCorruptImage, err, message, formatNames[v.header.Format])
}

// hasBrand reports whether an ISO base media file lists brand among the compatible
// brands of its ftyp box.
func hasBrand(src []byte, brand string) bool {
	size := int(binary.BigEndian.Uint32(src))
	for p := 16; p+4 <= min(size, len(src)); p += 4 {
		if string(src[p:p+4]) == brand {
			return true
		}
	}
	return false
}

// stripWebP drops the metadata chunks (EXIF, XMP, ICC profile) from a WebP and clears
// their flags: libvips 8.14's webpsave writes an EXIF chunk even when told to strip.
func stripWebP(src []byte) []byte {
	out := append([]byte(nil), src[:12]...)
	webpChunks(src, func(id string, data []byte) bool {
		switch id {
		case "EXIF", "XMP ", "ICCP":
			return true
		case "VP8X":
			data = bytes.Clone(data)
			data[0] &^= 0x20 | 0x08 | 0x04 // ICC, EXIF and XMP present
		}
		out = append(out, id...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
		if len(data)%2 == 1 {
			out = append(out, 0)
		}
		return true
	})
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)-8))
	return out
}

// vipsTrimAbove is the resident set size above which a finishing job hands glibc's
// free memory back to the system (malloc_trim). libvips allocates with malloc, out
// of Go's sight: a progressive 13 MP JPEG needs ~50 MiB of coefficients, which glibc
// keeps for the next job. Trimming makes the next big job fault its memory in again:
// on the 40-photo run a worker with 2 job slots settles at ~200 MiB, and trimming
// above 192 MiB cost up to 2x the engine's CPU on the runs that crossed it, so the
// line sits above that level and still bounds what one huge image leaves behind
// (BENCHMARKS.md, "Speed, round two"). 0 trims after every job (the memory test
// does, to see the floor).
var vipsTrimAbove int64 = 320 << 20

// finish releases the job's libvips images and, when the process has grown past
// vipsTrimAbove, returns free memory to the system.
func (v *vipsJob) finish() {
	v.setCurrent(nil)
	v.decoded.close()
	v.source.close()
	if rss := residentBytes(); rss < 0 || rss > vipsTrimAbove {
		trimMalloc()
	}
}

// residentBytes is this process's resident set size, or -1 when it cannot be read.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return -1
	}
	return resident * int64(os.Getpagesize())
}

// pngHasEnd reports whether a PNG has its IEND chunk, as every complete PNG does.
func pngHasEnd(src []byte) bool {
	return bytes.LastIndex(src, []byte("\x00\x00\x00\x00IEND\xae\x42\x60\x82")) >= 0
}

// pngWithoutText drops a PNG's text chunks (tEXt, zTXt, iTXt), which libpng would
// inflate for libvips's metadata: a 6 KB file whose zTXt inflates to megabytes costs
// ~250 ms that way, for text the thumbnail never carries. src is returned as it is
// when it has none; a malformed chunk ends the walk and the rest is kept, for libpng
// to judge.
func pngWithoutText(src []byte) []byte {
	var out []byte
	p := 8
	for p+12 <= len(src) {
		size := int(binary.BigEndian.Uint32(src[p:]))
		kind := string(src[p+4 : p+8])
		if size < 0 || size > len(src)-p-12 {
			break
		}
		end := p + 12 + size
		switch kind {
		case "tEXt", "zTXt", "iTXt":
			if out == nil {
				out = append(make([]byte, 0, len(src)), src[:p]...)
			}
		default:
			if out != nil {
				out = append(out, src[p:end]...)
			}
		}
		p = end
	}
	if out == nil {
		return src
	}
	return append(out, src[p:]...)
}

//go:build vips

package thumbnail

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Default is the engine Make uses: in this build, libvips.
var Default Engine = vipsEngine{}

func init() {
	if err := startVips(); err != nil {
		panic(err) // a build with the vips tag and a broken libvips must not start
	}
}

// vipsEngine makes thumbnails with libvips: vips_thumbnail_buffer decodes JPEGs at
// 1/2, 1/4 or 1/8 scale inside libjpeg (shrink-on-load), WebP at the scale asked,
// and only the first frame or page; it turns the image upright and converts an
// embedded ICC profile to sRGB; the thumbnail leaves with no metadata. The size is
// still read and guarded by this package, from the header, before libvips sees the
// bytes. One libvips thread per job, no operation cache (vips.go); measured in
// VIPS_RESULTS.txt.
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

func (vipsEngine) Encodes(f Format) bool {
	switch f {
	case FormatJPEG, FormatPNG, FormatWebP:
		return true
	}
	return false
}

func (e vipsEngine) Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	j := &job{engine: e, src: src, spec: spec}
	v := &vipsJob{job: j}
	defer v.finish()
	if err := runPipeline(ctx, j, v.pipeline(ctx)); err != nil {
		return Result{}, err
	}
	return Result{
		Data:        j.out,
		ContentType: contentTypes[j.spec.Format],
		Format:      j.spec.Format,
		Width:       j.geometry.Crop.Dx(),
		Height:      j.geometry.Crop.Dy(),
		Engine:      e.Name() + "/" + e.Version(),
		Timings:     j.timings,
	}, nil
}

// vipsJob is the libvips side of one job.
type vipsJob struct {
	*job
	image *vipsImage
	vips  vipsHeader // the header as libvips read it
}

// pipeline is the libvips engine, top to bottom. The first steps are the pure-Go
// engine's: nothing reaches libvips before the header has passed the pixel guard.
// libvips then reads the header again (lazily: no pixels) to say how it will turn
// the image, so that the geometry is planned by the same code as the Go engine's
// and both give the same size to the pixel.
func (v *vipsJob) pipeline(ctx context.Context) []step {
	return []step{
		{"check the spec", checkSpec, StagePrepare},
		{"read the header", readHeaderStep, StagePrepare}, // sniff the format, then its dimensions
		{"guard the pixel count", guardPixels, StagePrepare},
		{"open with libvips", v.open, StagePrepare}, // the header again, and the orientation
		{"plan the geometry", planGeometryStep, StagePrepare},
		{"set up shrink-on-load, orient, sRGB, crop, flatten", v.build, StagePrepare},
		{"decode and encode", func(*job) error { return v.save(ctx) }, StageDecodeResizeEncode},
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
	v.image = newVipsImage(src)
	h, err := v.image.header()
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

func (v *vipsJob) build(*job) error {
	if err := v.image.build(v.vips, v.geometry, v.spec.Format == FormatJPEG); err != nil {
		return newError(CodeCorruptImage, err, "the file is a damaged %s image", formatNames[v.header.Format])
	}
	return nil
}

// save runs the pipeline: the decode happens here. A deadline that passes meanwhile
// kills the running libvips pipeline rather than waiting for it.
func (v *vipsJob) save(ctx context.Context) error {
	stop := context.AfterFunc(ctx, v.image.kill)
	defer stop()
	out, err := v.image.save(v.spec.Format, v.spec.Quality)
	if ctx.Err() != nil {
		return errTimeout(ctx.Err())
	}
	if err != nil {
		return newError(CodeCorruptImage, err, "the file is a damaged or truncated %s image", formatNames[v.header.Format])
	}
	if v.spec.Format == FormatWebP {
		out = stripWebP(out)
	}
	v.out = out
	return nil
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
// keeps for the next job. Trimming after every job keeps RSS at its floor but makes
// the next big job fault its memory in again (~+25% CPU on such photos); trimming
// only above this size keeps most of the speed and bounds RSS (VIPS_RESULTS.txt).
// THUMBNAILED_VIPS_TRIM_ABOVE_MB overrides it; 0 trims after every job.
var vipsTrimAbove = trimAboveFromEnv(os.Getenv("THUMBNAILED_VIPS_TRIM_ABOVE_MB"), 192<<20)

func trimAboveFromEnv(value string, fallback int64) int64 {
	mb, err := strconv.ParseInt(value, 10, 64)
	if err != nil || mb < 0 {
		return fallback
	}
	return mb << 20
}

// finish releases the job's libvips pipeline and, when the process has grown past
// vipsTrimAbove, returns free memory to the system.
func (v *vipsJob) finish() {
	if v.image != nil {
		v.image.close()
	}
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

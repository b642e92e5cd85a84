//go:build vips

package thumbnail

// The libvips binding: a few small C functions over vips_thumbnail_buffer and the
// savers, called through cgo. Direct cgo rather than govips: the same libvips calls
// at the same speed (VIPS_RESULTS.txt), with the options govips does not expose
// (export_profile, fail_on, blocking loaders), no global logger, and no extra module.

/*
#cgo pkg-config: vips
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <vips/vips.h>

static void thumbnailed_quiet(const gchar *domain, GLogLevelFlags level,
	const gchar *message, gpointer data)
{
}

// thumbnailed_env_sets reports whether the environment already chooses a malloc
// setting, by its variable or by a GLIBC_TUNABLES entry: an operator's choice wins.
static int thumbnailed_env_sets(const char *variable, const char *tunable)
{
	const char *tunables = getenv("GLIBC_TUNABLES");
	return getenv(variable) != NULL || (tunables != NULL && strstr(tunables, tunable) != NULL);
}

// thumbnailed_malloc_defaults sets glibc's malloc up for libvips under a job queue. It
// runs when the program is loaded, before the Go runtime starts a thread: glibc fixes
// its limit on arenas the first time a thread needs one, so a mallopt made later (from
// Go's init) no longer limits them. Measured in BENCHMARKS.md ("Speed, round two"):
//   - one arena (MALLOC_ARENA_MAX=1): with glibc's default of 8 per core every thread
//     keeps the buffers it freed in an arena of its own, and the worker's resident set
//     doubled (~450 MiB for two concurrent 13 MP progressive JPEGs, against ~245);
//   - buffers up to 32 MiB from the heap (M_MMAP_THRESHOLD, the most glibc allows):
//     libjpeg's coefficient buffers of a progressive photo (13-27 MiB each) were
//     otherwise mapped afresh and faulted in page by page for every job, about a third
//     of the worker's CPU;
//   - the top of the heap handed back only past 128 MiB free (M_TRIM_THRESHOLD): the
//     fixed threshold above otherwise leaves glibc's at 128 KiB, which gave the buffers
//     back after every job.
// Each is left alone when the environment sets it (MALLOC_ARENA_MAX,
// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES).
__attribute__((constructor)) static void thumbnailed_malloc_defaults(void)
{
	if (!thumbnailed_env_sets("MALLOC_ARENA_MAX", "glibc.malloc.arena_max"))
		mallopt(M_ARENA_MAX, 1);
	if (!thumbnailed_env_sets("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"))
		mallopt(M_MMAP_THRESHOLD, 32 << 20);
	if (!thumbnailed_env_sets("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"))
		mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

// thumbnailed_init starts libvips tuned for a job queue: one libvips thread per
// job (the queue runs as many jobs as there are cores), no operation cache (every
// image is seen once), and only the loaders this package sniffs and guards.
static int thumbnailed_init(void)
{
	if (VIPS_INIT("thumbnailed"))
		return -1;
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE |
		G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG, thumbnailed_quiet, NULL);
	vips_concurrency_set(1);
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	vips_cache_set_max_files(0);
	vips_block_untrusted_set(TRUE);
	vips_operation_block_set("VipsForeignLoad", TRUE);
	vips_operation_block_set("VipsForeignLoadJpeg", FALSE);
	vips_operation_block_set("VipsForeignLoadPng", FALSE);
	vips_operation_block_set("VipsForeignLoadNsgif", FALSE);
	vips_operation_block_set("VipsForeignLoadWebp", FALSE);
	vips_operation_block_set("VipsForeignLoadTiff", FALSE);
	vips_operation_block_set("VipsForeignLoadHeif", FALSE);
	return 0;
}

// thumbnailed_open opens an image lazily: only its header is read.
static VipsImage *thumbnailed_open(const void *buf, size_t len)
{
	return vips_image_new_from_buffer(buf, len, "",
		"access", VIPS_ACCESS_SEQUENTIAL,
		"fail_on", VIPS_FAIL_ON_ERROR,
		NULL);
}

static int thumbnailed_orientation(VipsImage *image)
{
	int orientation = 1;
	if (vips_image_get_typeof(image, VIPS_META_ORIENTATION) &&
		vips_image_get_int(image, VIPS_META_ORIENTATION, &orientation))
		orientation = 1;
	return orientation;
}

// thumbnailed_has_profile reports whether an image carries an ICC profile that
// needs converting to sRGB: not the standard sRGB IEC61966-2.1 profile most cameras
// embed (its device manufacturer and model are "IEC " and "sRGB"), which would only
// cost a ~12 ms transform that changes nothing.
static int thumbnailed_has_profile(VipsImage *image)
{
	const unsigned char *profile;
	size_t length;

	if (!vips_image_get_typeof(image, VIPS_META_ICC_NAME) ||
		vips_image_get_blob(image, VIPS_META_ICC_NAME, (const void **) &profile, &length))
		return 0;
	return length < 128 || memcmp(profile + 48, "IEC sRGB", 8) != 0;
}

static const char *thumbnailed_loader(VipsImage *image)
{
	const char *loader = "";
	if (vips_image_get_typeof(image, VIPS_META_LOADER) &&
		vips_image_get_string(image, VIPS_META_LOADER, &loader))
		loader = "";
	return loader;
}

// thumbnailed_load sets up, without running it, the decode of the source at exactly
// width x height: shrink-on-load (a JPEG is decoded at 1/2, 1/4 or 1/8 scale inside
// libjpeg when that still leaves enough pixels), upright, first frame or page, and an
// embedded ICC profile converted to sRGB. An image without a profile is taken to be
// sRGB already and is not transformed: a round trip through the built-in sRGB
// profile moves saturated colours ((0,255,0) comes out (18,253,22)).
static int thumbnailed_load(const void *buf, size_t len, int has_profile,
	int width, int height, VipsImage **out)
{
	VipsImage *image;

	// fail_on goes to the loader in the option string too: 8.14's
	// thumbnail_buffer does not pass its own fail_on on to it.
	if (vips_thumbnail_buffer((void *) buf, len, &image, width,
		"height", height,
		"size", VIPS_SIZE_FORCE,
		"export_profile", has_profile ? "srgb" : NULL,
		"fail_on", VIPS_FAIL_ON_ERROR,
		"option_string", "[fail_on=error]",
		NULL))
		return -1;
	if (image->Xsize != width || image->Ysize != height) {
		vips_error("thumbnailed", "libvips scaled to %dx%d, not %dx%d",
			image->Xsize, image->Ysize, width, height);
		g_object_unref(image);
		return -1;
	}
	*out = image;
	return 0;
}

// thumbnailed_keep ends a set-up whose steps' images live in context: in (the
// last step) goes to the caller in *out, the rest is freed with context; in is
// NULL when a step failed, and the answer is then -1.
static int thumbnailed_keep(VipsImage *context, VipsImage *in, VipsImage **out)
{
	if (in) {
		g_object_ref(in);
		*out = in;
	}
	g_object_unref(context);
	return in ? 0 : -1;
}

// thumbnailed_resize sets up the scaling of an image to exactly width x height with
// Lanczos3, premultiplied when it has alpha, as vips_thumbnail does. The same size
// is the same image.
static int thumbnailed_resize(VipsImage *in, int width, int height, VipsImage **out)
{
	if (in->Xsize == width && in->Ysize == height) {
		g_object_ref(in);
		*out = in;
		return 0;
	}
	VipsImage *context = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(context), 5);
	VipsImage *x = in;
	int alpha = vips_image_hasalpha(in);

	if (alpha) {
		if (vips_premultiply(x, &t[0], NULL))
			goto fail;
		x = t[0];
	}
	if (vips_resize(x, &t[1], (double) width / in->Xsize,
		"vscale", (double) height / in->Ysize,
		"kernel", VIPS_KERNEL_LANCZOS3,
		NULL))
		goto fail;
	x = t[1];
	if (alpha) {
		if (vips_unpremultiply(x, &t[2], NULL) ||
			vips_cast(t[2], &t[3], in->BandFmt, NULL))
			goto fail;
		x = t[3];
	}
	// vips_resize rounds the size its own way: cut or repeat the odd edge pixel.
	if (x->Xsize != width || x->Ysize != height) {
		if (vips_embed(x, &t[4], 0, 0, width, height,
			"extend", VIPS_EXTEND_COPY, NULL))
			goto fail;
		x = t[4];
	}
	return thumbnailed_keep(context, x, out);

fail:
	return thumbnailed_keep(context, NULL, out);
}

// thumbnailed_8bit sets up in as 8-bit sRGB, or grey for one or two bands, in *out
// (in itself when it is already); t holds the two steps' images for the caller's
// context to free.
static int thumbnailed_8bit(VipsImage *in, VipsImage **t, VipsImage **out)
{
	VipsInterpretation want = in->Bands <= 2 ?
		VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
	if (in->Type != want || in->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_colourspace(in, &t[0], want, NULL))
			return -1;
		in = t[0];
	}
	if (in->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast(in, &t[1], VIPS_FORMAT_UCHAR, NULL))
			return -1;
		in = t[1];
	}
	*out = in;
	return 0;
}

// thumbnailed_on_white sets up in flattened onto white in *out (in itself when it
// has no alpha); t holds the step's image for the caller's context to free.
static int thumbnailed_on_white(VipsImage *in, VipsImage **t, VipsImage **out)
{
	if (vips_image_hasalpha(in)) {
		VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
		int failed = vips_flatten(in, t, "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (failed)
			return -1;
		in = *t;
	}
	*out = in;
	return 0;
}

// thumbnailed_finish sets up, without running it, the rest of an output: crop,
// 8-bit sRGB (or grey; CMYK without a profile through libvips's built-in one), alpha
// flattened onto white when asked, and no metadata.
static int thumbnailed_finish(VipsImage *in,
	int crop_x, int crop_y, int crop_w, int crop_h,
	int flatten, VipsImage **out)
{
	VipsImage *context = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(context), 5);

	if (crop_w != in->Xsize || crop_h != in->Ysize) {
		if (vips_extract_area(in, &t[0], crop_x, crop_y, crop_w, crop_h, NULL))
			goto fail;
		in = t[0];
	}

	if (thumbnailed_8bit(in, &t[1], &in) ||
		(flatten && thumbnailed_on_white(in, &t[3], &in)))
		goto fail;

	// The savers' strip option misses some (webpsave in 8.14 keeps EXIF): take every
	// piece of metadata off the image itself.
	if (vips_copy(in, &t[4], NULL))
		goto fail;
	in = t[4];
	gchar **fields = vips_image_get_fields(in);
	for (int i = 0; fields[i]; i++)
		if (!vips_isprefix("vips-", fields[i]))
			vips_image_remove(in, fields[i]);
	g_strfreev(fields);

	return thumbnailed_keep(context, in, out);

fail:
	return thumbnailed_keep(context, NULL, out);
}

// thumbnailed_analysis sets up a small copy of an image for Go to measure (the
// interest for smart crop, the placeholder): flattened onto white, shrunk by
// averaging shrink x shrink blocks, 8-bit sRGB or grey, so that few pixels need
// copying into Go.
static int thumbnailed_analysis(VipsImage *in, int shrink, VipsImage **out)
{
	VipsImage *context = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(context), 4);

	if (thumbnailed_on_white(in, &t[0], &in))
		goto fail;
	if (shrink > 1) {
		if (vips_shrink(in, &t[1], shrink, shrink, NULL))
			goto fail;
		in = t[1];
	}
	if (thumbnailed_8bit(in, &t[2], &in))
		goto fail;
	return thumbnailed_keep(context, in, out);

fail:
	return thumbnailed_keep(context, NULL, out);
}

// thumbnailed_pixels points at a rendered 8-bit image's pixels, for Go to copy.
static const unsigned char *thumbnailed_pixels(VipsImage *image)
{
	if (image->BandFmt != VIPS_FORMAT_UCHAR || image->Bands < 1 || image->Bands > 4) {
		vips_error("thumbnailed", "cannot read %d-band pixels of format %d",
			image->Bands, image->BandFmt);
		return NULL;
	}
	if (vips_image_wio_input(image))
		return NULL;
	return (const unsigned char *) VIPS_IMAGE_ADDR(image, 0, 0);
}

// thumbnailed_render runs a pipeline into target, a memory image.
static int thumbnailed_render(VipsImage *in, VipsImage *target)
{
	return vips_image_write(in, target);
}

enum { SAVE_JPEG, SAVE_PNG, SAVE_WEBP };

// thumbnailed_save encodes the rendered thumbnail with no metadata.
static int thumbnailed_save(VipsImage *in, int format, int quality,
	void **buf, size_t *len)
{
	switch (format) {
	case SAVE_JPEG:
		return vips_jpegsave_buffer(in, buf, len, "Q", quality, "strip", TRUE,
			"optimize_coding", TRUE, "interlace", FALSE, NULL);
	case SAVE_PNG:
		return vips_pngsave_buffer(in, buf, len, "strip", TRUE, NULL);
	case SAVE_WEBP:
		return vips_webpsave_buffer(in, buf, len, "Q", quality, "strip", TRUE,
			"effort", 4, NULL);
	}
	vips_error("thumbnailed", "unknown output format %d", format);
	return -1;
}

static void thumbnailed_unref(VipsImage *image) { g_object_unref(image); }
static void thumbnailed_kill(VipsImage *image) { vips_image_set_kill(image, TRUE); }
*/
import "C"

import (
	"errors"
	"image"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

var (
	vipsStartOnce sync.Once
	vipsStartErr  error
)

// startVips starts libvips once per process, on first use.
func startVips() error {
	vipsStartOnce.Do(func() {
		if C.thumbnailed_init() != 0 {
			vipsStartErr = vipsError("starting libvips")
		}
	})
	return vipsStartErr
}

// vipsVersion is the linked libvips's version, e.g. "8.14.1".
func vipsVersion() string {
	return C.GoString(C.vips_version_string())
}

// vipsError takes libvips's error buffer, its repeated lines once and at most
// maxErrorText bytes of it (a damaged TIFF can fill it with hundreds of seeks). The
// buffer is global: under concurrent jobs a message may carry another job's lines
// too; it is only ever a cause for logs.
func vipsError(what string) error {
	text := ""
	if s := C.vips_error_buffer_copy(); s != nil {
		text = C.GoString(s)
		C.g_free(C.gpointer(s))
	}
	var lines []string
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" && !slices.Contains(lines, line) {
			lines = append(lines, line)
		}
	}
	msg := strings.Join(lines, "; ")
	if msg == "" {
		msg = "no message"
	}
	if len(msg) > maxErrorText {
		msg = strings.ToValidUTF8(msg[:maxErrorText], "") + " …"
	}
	return errors.New("libvips: " + what + ": " + msg)
}

const maxErrorText = 400

// vipsSource is a job's source held in Go memory for libvips: pinned for as long
// as libvips may read it, which is until close. It also holds the kill switch: every
// render of the job goes through render, so a kill reaches whichever is running.
type vipsSource struct {
	src    []byte
	pinner runtime.Pinner

	mu        sync.Mutex
	killed    bool
	rendering *C.VipsImage // the memory image being rendered into, if any
}

// hold keeps src for libvips to read, until close. The kill switch works before it.
func (v *vipsSource) hold(src []byte) {
	v.src = src
	v.pinner.Pin(&src[0])
}

func (v *vipsSource) buf() (unsafe.Pointer, C.size_t) {
	return unsafe.Pointer(&v.src[0]), C.size_t(len(v.src))
}

// vipsHeader is what libvips reads from the header when it opens an image lazily.
type vipsHeader struct {
	Width, Height int
	Orientation   int    // EXIF orientation, 1..8, as libvips will apply it
	Loader        string // e.g. "jpegload_buffer"
	HasProfile    bool   // an embedded ICC profile
}

// header opens the source lazily and reads its header; no pixels are decoded.
func (v *vipsSource) header() (vipsHeader, error) {
	buf, n := v.buf()
	image := C.thumbnailed_open(buf, n)
	if image == nil {
		return vipsHeader{}, vipsError("reading the header")
	}
	defer C.thumbnailed_unref(image)
	return vipsHeader{
		Width:       int(image.Xsize),
		Height:      int(image.Ysize),
		Orientation: int(C.thumbnailed_orientation(image)),
		Loader:      C.GoString(C.thumbnailed_loader(image)),
		HasProfile:  C.thumbnailed_has_profile(image) != 0,
	}, nil
}

// load sets up, without running it, the decode of the source at exactly size
// (upright), with shrink-on-load.
func (v *vipsSource) load(h vipsHeader, size image.Point) (*vipsImage, error) {
	buf, n := v.buf()
	var out *C.VipsImage
	if C.thumbnailed_load(buf, n, cBool(h.HasProfile), C.int(size.X), C.int(size.Y), &out) != 0 {
		return nil, vipsError("setting up the decode")
	}
	return &vipsImage{out}, nil
}

var errKilled = errors.New("libvips: the job was stopped")

// render runs a pipeline into a new memory image: the only way this package runs
// one. Rendering there, rather than letting a saver pull the pixels, is what lets a
// kill stop the work: libvips checks the kill flag of the image being rendered, and
// a saver renders an image of its own making.
func (v *vipsSource) render(in *vipsImage) (*vipsImage, error) {
	target := C.vips_image_new_memory()
	v.mu.Lock()
	if v.killed {
		v.mu.Unlock()
		C.thumbnailed_unref(target)
		return nil, errKilled
	}
	v.rendering = target
	v.mu.Unlock()
	failed := C.thumbnailed_render(in.c, target) != 0
	v.mu.Lock()
	v.rendering = nil
	killed := v.killed
	v.mu.Unlock()
	if failed || killed {
		C.thumbnailed_unref(target)
		if killed {
			return nil, errKilled
		}
		return nil, vipsError("rendering")
	}
	return &vipsImage{target}, nil
}

// kill stops the render under way, if any, and every later one: they fail. Safe to
// call at any time, from any goroutine.
func (v *vipsSource) kill() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.killed = true
	if v.rendering != nil {
		C.thumbnailed_kill(v.rendering)
	}
}

func (v *vipsSource) close() { v.pinner.Unpin() }

// vipsImage is one libvips image held by Go: a pipeline set up but not run, or
// rendered pixels in memory. close drops it.
type vipsImage struct{ c *C.VipsImage }

func (m *vipsImage) close() {
	if m != nil && m.c != nil {
		C.thumbnailed_unref(m.c)
		m.c = nil
	}
}

func (m *vipsImage) size() image.Point { return image.Pt(int(m.c.Xsize), int(m.c.Ysize)) }

// resize sets up scaling to exactly size with Lanczos3.
func (m *vipsImage) resize(size image.Point) (*vipsImage, error) {
	var out *C.VipsImage
	if C.thumbnailed_resize(m.c, C.int(size.X), C.int(size.Y), &out) != 0 {
		return nil, vipsError("setting up the resize")
	}
	return &vipsImage{out}, nil
}

// finish sets up the crop, 8-bit sRGB or grey, flattening when asked, and no metadata.
func (m *vipsImage) finish(crop image.Rectangle, flatten bool) (*vipsImage, error) {
	var out *C.VipsImage
	if C.thumbnailed_finish(m.c, C.int(crop.Min.X), C.int(crop.Min.Y), C.int(crop.Dx()), C.int(crop.Dy()),
		cBool(flatten), &out) != 0 {
		return nil, vipsError("setting up the thumbnail")
	}
	return &vipsImage{out}, nil
}

// analysisPixels sets up the copy smart crop measures interest on: shrunk
// by averaging k x k blocks, flattened, 8-bit.
func (m *vipsImage) analysisPixels(k int) (*vipsImage, error) {
	var out *C.VipsImage
	if C.thumbnailed_analysis(m.c, C.int(k), &out) != 0 {
		return nil, vipsError("setting up the measure of interest")
	}
	return &vipsImage{out}, nil
}

// placeholderPixels sets up the copy a placeholder is computed from: flattened onto
// white and shrunk as placeholderCopy does, so that only a few thousand pixels need
// copying into Go memory.
func (m *vipsImage) placeholderPixels() (*vipsImage, error) {
	var out *C.VipsImage
	// The output is 8-bit sRGB or grey already: the analysis copy's
	// conversion has nothing to do.
	if C.thumbnailed_analysis(m.c, C.int(placeholderShrink(m.size())), &out) != 0 {
		return nil, vipsError("setting up the placeholder")
	}
	return &vipsImage{out}, nil
}

// pixels copies a rendered 8-bit image (grey or sRGB, with or without alpha) into
// Go memory as premultiplied RGBA.
func (m *vipsImage) pixels() (*image.RGBA, error) {
	data := C.thumbnailed_pixels(m.c)
	if data == nil {
		return nil, vipsError("reading the pixels")
	}
	bands := int(m.c.Bands)
	size := m.size()
	src := unsafe.Slice((*byte)(unsafe.Pointer(data)), size.X*size.Y*bands)
	dst := image.NewRGBA(image.Rectangle{Max: size})
	for i := range size.X * size.Y {
		p, q := src[i*bands:i*bands+bands], dst.Pix[4*i:4*i+4]
		switch bands {
		case 1, 2:
			q[0], q[1], q[2], q[3] = p[0], p[0], p[0], 0xff
		default:
			q[0], q[1], q[2], q[3] = p[0], p[1], p[2], 0xff
		}
		if bands == 2 || bands == 4 {
			a := uint32(p[bands-1])
			q[3] = uint8(a)
			for c := range 3 {
				q[c] = uint8((uint32(q[c])*a + 127) / 255)
			}
		}
	}
	return dst, nil
}

var saveFormats = map[Format]C.int{FormatJPEG: C.SAVE_JPEG, FormatPNG: C.SAVE_PNG, FormatWebP: C.SAVE_WEBP}

// save encodes a rendered image with no metadata.
func (m *vipsImage) save(format Format, quality int) ([]byte, error) {
	var out unsafe.Pointer
	var n C.size_t
	if C.thumbnailed_save(m.c, saveFormats[format], C.int(quality), &out, &n) != 0 {
		return nil, vipsError("encoding the thumbnail")
	}
	defer C.g_free(C.gpointer(out))
	return C.GoBytes(out, C.int(n)), nil
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// trimMalloc returns glibc's free memory to the system.
func trimMalloc() { C.malloc_trim(0) }

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

// thumbnailed_build sets up, without running it, the pipeline from the source
// bytes to the thumbnail's pixels: shrink-on-load to exactly scale_w x scale_h
// (upright, first frame or page, an embedded ICC profile converted to sRGB), crop,
// 8-bit sRGB (or grey; CMYK without a profile through libvips's built-in one),
// alpha flattened onto white when asked, and no metadata. An image without a
// profile is taken to be sRGB already and is not transformed: a round trip through
// the built-in sRGB profile moves saturated colours ((0,255,0) comes out (18,253,22)).
static int thumbnailed_build(const void *buf, size_t len, int has_profile,
	int scale_w, int scale_h,
	int crop_x, int crop_y, int crop_w, int crop_h,
	int flatten, VipsImage **out)
{
	VipsImage *context = vips_image_new();
	VipsImage **t = (VipsImage **) vips_object_local_array(VIPS_OBJECT(context), 6);
	VipsImage *in;

	// fail_on goes to the loader in the option string too: 8.14's
	// thumbnail_buffer does not pass its own fail_on on to it.
	if (vips_thumbnail_buffer((void *) buf, len, &t[0], scale_w,
		"height", scale_h,
		"size", VIPS_SIZE_FORCE,
		"export_profile", has_profile ? "srgb" : NULL,
		"fail_on", VIPS_FAIL_ON_ERROR,
		"option_string", "[fail_on=error]",
		NULL))
		goto fail;
	in = t[0];
	if (in->Xsize != scale_w || in->Ysize != scale_h) {
		vips_error("thumbnailed", "libvips scaled to %dx%d, not %dx%d",
			in->Xsize, in->Ysize, scale_w, scale_h);
		goto fail;
	}
	if (crop_w != scale_w || crop_h != scale_h) {
		if (vips_extract_area(in, &t[1], crop_x, crop_y, crop_w, crop_h, NULL))
			goto fail;
		in = t[1];
	}

	VipsInterpretation want = in->Bands <= 2 ?
		VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
	if (in->Type != want || in->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_colourspace(in, &t[2], want, NULL))
			goto fail;
		in = t[2];
	}
	if (in->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast(in, &t[3], VIPS_FORMAT_UCHAR, NULL))
			goto fail;
		in = t[3];
	}
	if (flatten && vips_image_hasalpha(in)) {
		VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
		int failed = vips_flatten(in, &t[4], "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (failed)
			goto fail;
		in = t[4];
	}

	// The savers' strip option misses some (webpsave in 8.14 keeps EXIF): take every
	// piece of metadata off the image itself.
	if (vips_copy(in, &t[5], NULL))
		goto fail;
	in = t[5];
	gchar **fields = vips_image_get_fields(in);
	for (int i = 0; fields[i]; i++)
		if (!vips_isprefix("vips-", fields[i]))
			vips_image_remove(in, fields[i]);
	g_strfreev(fields);

	g_object_ref(in);
	*out = in;
	g_object_unref(context);
	return 0;

fail:
	g_object_unref(context);
	return -1;
}

// thumbnailed_render runs the pipeline into target, a memory image. Rendering there
// first, rather than letting a saver pull the pixels, is what lets a kill stop the
// decode: libvips checks the kill flag of the image being rendered, and a saver
// renders an image of its own making.
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

// vipsImage is one pipeline over a source held in Go memory: the source is pinned
// for as long as libvips may read it, which is until close.
type vipsImage struct {
	src    []byte
	pinner runtime.Pinner

	mu     sync.Mutex
	image  *C.VipsImage // the last stage of the pipeline, nil once closed
	target *C.VipsImage // the memory image it is rendered into
}

func newVipsImage(src []byte) *vipsImage {
	v := &vipsImage{src: src}
	v.pinner.Pin(&src[0])
	return v
}

func (v *vipsImage) buf() (unsafe.Pointer, C.size_t) {
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
func (v *vipsImage) header() (vipsHeader, error) {
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

// build sets up the pipeline for a geometry without running it.
func (v *vipsImage) build(h vipsHeader, g geometry, flatten bool) error {
	buf, n := v.buf()
	var image *C.VipsImage
	if C.thumbnailed_build(buf, n, cBool(h.HasProfile),
		C.int(g.Scale.X), C.int(g.Scale.Y),
		C.int(g.Crop.Min.X), C.int(g.Crop.Min.Y), C.int(g.Crop.Dx()), C.int(g.Crop.Dy()),
		cBool(flatten), &image) != 0 {
		return vipsError("setting up the thumbnail")
	}
	v.mu.Lock()
	v.image, v.target = image, C.vips_image_new_memory()
	v.mu.Unlock()
	return nil
}

var saveFormats = map[Format]C.int{FormatJPEG: C.SAVE_JPEG, FormatPNG: C.SAVE_PNG, FormatWebP: C.SAVE_WEBP}

// save runs the pipeline, which is where the source is decoded, and encodes the result.
func (v *vipsImage) save(format Format, quality int) ([]byte, error) {
	if C.thumbnailed_render(v.image, v.target) != 0 {
		return nil, vipsError("making the thumbnail")
	}
	var out unsafe.Pointer
	var n C.size_t
	if C.thumbnailed_save(v.target, saveFormats[format], C.int(quality), &out, &n) != 0 {
		return nil, vipsError("encoding the thumbnail")
	}
	defer C.g_free(C.gpointer(out))
	return C.GoBytes(out, C.int(n)), nil
}

// kill asks a running save to stop; it then fails. Safe to call at any time, from
// any goroutine.
func (v *vipsImage) kill() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.target != nil {
		C.thumbnailed_kill(v.target)
	}
}

func (v *vipsImage) close() {
	v.mu.Lock()
	for _, image := range []**C.VipsImage{&v.image, &v.target} {
		if *image != nil {
			C.thumbnailed_unref(*image)
			*image = nil
		}
	}
	v.mu.Unlock()
	v.pinner.Unpin()
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// trimMalloc returns glibc's free memory to the system.
func trimMalloc() { C.malloc_trim(0) }

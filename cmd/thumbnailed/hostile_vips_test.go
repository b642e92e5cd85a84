//go:build vips

package main

// What the service answers for the hostile files with the libvips engine, where
// that differs from the pure-Go one (hostileWants): TIFF, AVIF and HEIC are
// accepted, so their files are refused for what is wrong with them rather than
// for their format; and libvips has libpng skip the zlib Adler-32 check, so a PNG
// whose only defect is that checksum (its pixels are intact) makes a thumbnail.
func init() {
	for file, want := range map[string]hostileWant{
		"hostile/bomb/libvips-17000x17000.avif":                                    {"too_many_pixels", true},
		"hostile/corrupt/go-png-invalid-zlib.png":                                  {"", false},
		"hostile/fuzz/goimage-tiff-0x0.tiff":                                       {"corrupt_image", true},
		"hostile/fuzz/libheif-clap-overflow-divide-zero.heic":                      {"corrupt_image", false},
		"hostile/fuzz/libheif-crash-20ca2625096a205937b809a7841e7f019f0b2dc6.heic": {"corrupt_image", true},
		"hostile/fuzz/libheif-uaf_heif_context.h_117_1.heic":                       {"corrupt_image", false},
		"hostile/fuzz/pillow-crash-2020-10-test.tif":                               {"corrupt_image", true},
		"hostile/fuzz/pillow-crash-86214e58da443d2b80820cff9677a38a33dcbbca.tif":   {"corrupt_image", false},
		"hostile/fuzz/pillow-oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif":     {"corrupt_image", true},
	} {
		hostileWants[file] = want
	}
	hostileOverlooked["hostile/corrupt/go-png-invalid-zlib.png"] = true
}

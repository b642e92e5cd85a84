package thumbnail

import "image"

// transposes reports whether an EXIF orientation swaps width and height.
func transposes(orientation int) bool { return orientation >= 5 && orientation <= 8 }

// orient turns img upright according to an EXIF orientation (1..8). For a stored pixel
// (x, y) of a w x h image, the upright position is:
//
//	1 (x, y)          2 mirror: (w-1-x, y)          3 rotate 180: (w-1-x, h-1-y)
//	4 flip: (x, h-1-y) 5 transpose: (y, x)           6 rotate 90 CW: (h-1-y, x)
//	7 transverse: (h-1-y, w-1-x)                     8 rotate 270 CW: (y, w-1-x)
//
// The pipeline orients after scaling, when the image is thumbnail-sized.
func orient(img *image.RGBA, orientation int) *image.RGBA {
	if orientation < 2 || orientation > 8 {
		return img
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if transposes(orientation) {
		dst = image.NewRGBA(image.Rect(0, 0, h, w))
	}
	for y := range h {
		src := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):]
		for x := range w {
			var dx, dy int
			switch orientation {
			case 2:
				dx, dy = w-1-x, y
			case 3:
				dx, dy = w-1-x, h-1-y
			case 4:
				dx, dy = x, h-1-y
			case 5:
				dx, dy = y, x
			case 6:
				dx, dy = h-1-y, x
			case 7:
				dx, dy = h-1-y, w-1-x
			case 8:
				dx, dy = y, w-1-x
			}
			copy(dst.Pix[dst.PixOffset(dx, dy):][:4], src[4*x:4*x+4])
		}
	}
	return dst
}

// crop copies rectangle r of img into a new image at the origin.
func crop(img *image.RGBA, r image.Rectangle) *image.RGBA {
	r = r.Add(img.Rect.Min).Intersect(img.Rect)
	if r == img.Rect {
		return img
	}
	dst := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	for y := range r.Dy() {
		start := img.PixOffset(r.Min.X, r.Min.Y+y)
		copy(dst.Pix[y*dst.Stride:], img.Pix[start:start+4*r.Dx()])
	}
	return dst
}

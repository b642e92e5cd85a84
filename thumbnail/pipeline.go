package thumbnail

import (
	"context"
	"errors"
	"fmt"
	"image"
	"time"
)

// job is what flows through the pipeline: each step reads what the earlier steps
// left and adds its own part.
type job struct {
	engine Engine
	src    []byte
	spec   Spec // validated, with its defaults filled in

	header      Header
	orientation int      // EXIF orientation, 1..8
	geometry    geometry // in upright coordinates
	img         image.Image
	out         []byte
	timings     map[string]time.Duration
}

type step struct {
	name string
	run  func(*job) error
	// stage is where Result.Timings counts the step's time.
	stage string
}

// Stages that Result.Timings reports. libvips decodes, resizes and encodes in
// one streaming pass, so its engine reports them as one stage.
const (
	StagePrepare            = "prepare" // sniff, header, pixel guard, geometry
	StageDecodeResize       = "decode_resize"
	StageEncode             = "encode"
	StageDecodeResizeEncode = "decode_resize_encode"
)

// goPipeline is the pure-Go engine, top to bottom. Nothing is decoded before the
// header has passed the pixel guard, and the image is turned upright only after it
// has been scaled down: rotating a 256 px thumbnail instead of a 12 MP photo.
var goPipeline = []step{
	{"check the spec", checkSpec, StagePrepare},
	{"read the header", readHeaderStep, StagePrepare}, // sniff the format, then its dimensions
	{"guard the pixel count", guardPixels, StagePrepare},
	{"read the orientation", readOrientation, StagePrepare},
	{"plan the geometry", planGeometryStep, StagePrepare},
	{"decode", decodeStep, StageDecodeResize},
	{"resize", resizeStep, StageDecodeResize},
	{"orient", orientStep, StageDecodeResize},
	{"crop", cropStep, StageDecodeResize},
	{"flatten", flattenStep, StageDecodeResize},
	{"encode", encodeStep, StageEncode},
}

// runPipeline runs the steps in order, honouring the context's deadline between steps.
func runPipeline(ctx context.Context, j *job, steps []step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return errTimeout(err)
		}
		start := time.Now()
		if err := runStep(j, s); err != nil {
			return err
		}
		if j.timings == nil {
			j.timings = map[string]time.Duration{}
		}
		j.timings[s.stage] += time.Since(start)
	}
	return nil
}

// errPanicked marks a recovered panic, so tests and fuzzing can tell one from an
// ordinary refusal.
var errPanicked = errors.New("panic")

// runStep runs one step and turns a panic into corrupt_image: decoders of hostile input
// are where panics come from, and one bad image must not take the worker down.
func runStep(j *job, s step) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{
				Code:    CodeCorruptImage,
				Message: "the image could not be processed; the file may be damaged",
				Err:     fmt.Errorf("%w in step %q: %v", errPanicked, s.name, r),
			}
		}
	}()
	return s.run(j)
}

func checkSpec(j *job) error {
	if err := j.spec.Validate(); err != nil {
		return err
	}
	j.spec = j.spec.withDefaults()
	if !j.engine.Encodes(j.spec.Format) {
		return newError(CodeInvalidSpec, nil, "this build cannot write %s thumbnails", j.spec.Format)
	}
	return nil
}

func readHeaderStep(j *job) (err error) {
	j.header, err = readHeaderFor(j.engine, j.src)
	return err
}

func guardPixels(j *job) error {
	return j.header.CheckPixels(j.spec.MaxPixels)
}

func readOrientation(j *job) error {
	j.orientation = orientationOf(j.header.Format, j.src)
	return nil
}

func planGeometryStep(j *job) (err error) {
	width, height := j.header.Width, j.header.Height
	if transposes(j.orientation) {
		width, height = height, width
	}
	j.geometry, err = planGeometry(width, height, j.spec)
	return err
}

func decodeStep(j *job) (err error) {
	j.img, err = decode(j.src, j.header)
	return err
}

// resizeStep scales the stored (not yet upright) pixels, so the target's sides are
// swapped for orientations that transpose.
func resizeStep(j *job) error {
	width, height := j.geometry.Scale.X, j.geometry.Scale.Y
	if transposes(j.orientation) {
		width, height = height, width
	}
	j.img = scaleImage(j.img, width, height)
	return nil
}

func orientStep(j *job) error {
	j.img = orient(j.img.(*image.RGBA), j.orientation)
	return nil
}

func cropStep(j *job) error {
	j.img = crop(j.img.(*image.RGBA), j.geometry.Crop)
	return nil
}

func flattenStep(j *job) error {
	if j.spec.Format == FormatJPEG {
		flattenOnWhite(j.img.(*image.RGBA))
	}
	return nil
}

func encodeStep(j *job) (err error) {
	j.out, err = encode(j.img.(*image.RGBA), j.spec.Format, j.spec.Quality)
	return err
}

package thumbnail

import (
	"context"
	"errors"
	"fmt"
	"image"
	"strconv"
	"sync/atomic"
	"time"
)

// job is what flows through the pipeline: each step reads what the earlier steps
// left and adds its own part. One job decodes its source once and makes every
// output from that one decode.
type job struct {
	engine    Engine
	src       []byte
	asked     []Output // as the caller asked
	maxPixels int64    // the source limit, with its default once checked

	header      Header
	orientation int      // EXIF orientation, 1..8
	outputs     []output // one per asked output, in the same order
	smallest    int      // the output whose pixels make the placeholder
	img         image.Image
	placeholder Placeholder
	timings     map[string]time.Duration
}

// output is one output on its way through the pipeline.
type output struct {
	name       string
	spec       Spec     // validated, with its defaults filled in and the job's MaxPixels
	geometry   geometry // in upright coordinates; Crop is placed by the gravity
	img        *image.RGBA
	data       []byte
	encodeTime time.Duration
}

func newJob(e Engine, src []byte, outputs []Output, maxPixels int64) *job {
	return &job{engine: e, src: src, asked: outputs, maxPixels: maxPixels}
}

// step is one step of the part of the pipeline that runs once per job.
type step struct {
	name string
	run  func(*job) error
	// stage is where Set.Timings counts the step's time.
	stage string
}

// outputStep is one step of the part of the pipeline that runs once per output.
type outputStep struct {
	name  string
	run   func(*job, *output) error
	stage string
}

// Stages that Set.Timings (and Result.Timings from Make) report. Both engines report
// the same ones: the source is decoded once (StageDecode), then each output is
// resized, cropped and flattened (StageResize, summed over the outputs) and encoded
// (StageEncode, summed; each output's own time is Result.EncodeTime).
const (
	StagePrepare     = "prepare" // check the outputs, sniff, header, pixel guard, geometry
	StageDecode      = "decode"  // the one decode, shrunk to what the largest output needs
	StageResize      = "resize"  // every output: scale, orient, crop (gravity), flatten
	StagePlaceholder = "placeholder"
	StageEncode      = "encode"
)

// goPipeline is the pure-Go engine, top to bottom: the part that runs once per job.
// Nothing is decoded before the header has passed the pixel guard.
var goPipeline = []step{
	{"check the outputs", checkOutputs, StagePrepare},
	{"read the header", readHeaderStep, StagePrepare}, // sniff the format, then its dimensions
	{"guard the pixel count", guardPixels, StagePrepare},
	{"read the orientation", readOrientation, StagePrepare},
	{"plan the geometry", planGeometryStep, StagePrepare}, // of every output
	{"decode", decodeStep, StageDecode},                   // once, shrunk to twice the largest output
}

// goOutputPipeline then runs for each output in turn, from the decoded image. Each
// output is turned upright only after it has been scaled down: rotating a 256 px
// thumbnail instead of a 12 MP photo. An output's pixels are let go once encoded, so
// a job holds the decoded source and one output at a time.
var goOutputPipeline = []outputStep{
	{"resize", resizeStep, StageResize},
	{"orient", orientStep, StageResize},
	{"crop", cropStep, StageResize}, // where the gravity says
	{"flatten", flattenStep, StageResize},
	{"make the placeholder", placeholderStep, StagePlaceholder}, // from the smallest output only
	{"encode", encodeStep, StageEncode},
}

// runJob runs the steps of a job, then the output steps for each output in turn.
func runJob(ctx context.Context, j *job, steps []step, outputSteps []outputStep) error {
	if err := runPipeline(ctx, j, steps); err != nil {
		return err
	}
	for i := range j.outputs {
		o := &j.outputs[i]
		for _, s := range outputSteps {
			name := s.name + " (output " + strconv.Quote(o.name) + ")"
			if err := runPipeline(ctx, j, []step{{name, func(j *job) error { return s.run(j, o) }, s.stage}}); err != nil {
				return err
			}
		}
	}
	return nil
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

// set is the job's answer once every step has run.
func (j *job) set() Set {
	engine := j.engine.Name() + "/" + j.engine.Version()
	s := Set{Placeholder: j.placeholder, Engine: engine, Timings: j.timings}
	for _, o := range j.outputs {
		s.Outputs = append(s.Outputs, Result{
			Name:        o.name,
			Data:        o.data,
			ContentType: contentTypes[o.spec.Format],
			Format:      o.spec.Format,
			Width:       o.geometry.Crop.Dx(),
			Height:      o.geometry.Crop.Dy(),
			Engine:      engine,
			EncodeTime:  o.encodeTime,
		})
	}
	return s
}

// makeOne is Make for every engine: a job of one output, named "default".
func makeOne(ctx context.Context, e Engine, src []byte, spec Spec) (Result, error) {
	if err := spec.Validate(); err != nil {
		return Result{}, err // in Spec's own words, without naming an output
	}
	set, err := e.MakeSet(ctx, src, []Output{spec.output()}, spec.MaxPixels)
	if err != nil {
		return Result{}, err
	}
	res := set.Outputs[0]
	res.Timings = set.Timings
	return res, nil
}

func checkOutputs(j *job) error {
	if err := validateOutputs(j.asked, j.maxPixels); err != nil {
		return err
	}
	if j.maxPixels == 0 {
		j.maxPixels = DefaultMaxPixels
	}
	j.outputs = make([]output, len(j.asked))
	for i, o := range j.asked {
		spec := o.spec(j.maxPixels).withDefaults()
		if !j.engine.Encodes(spec.Format) {
			return newError(CodeInvalidSpec, nil, "this build cannot write %s thumbnails", spec.Format)
		}
		j.outputs[i] = output{name: outputName(o, i), spec: spec}
	}
	return nil
}

func readHeaderStep(j *job) (err error) {
	j.header, err = readHeaderFor(j.engine, j.src)
	return err
}

func guardPixels(j *job) error {
	return j.header.CheckPixels(j.maxPixels)
}

func readOrientation(j *job) error {
	j.orientation = orientationOf(j.header.Format, j.src)
	return nil
}

// planGeometryStep plans every output and picks the smallest, whose pixels will make
// the placeholder. An output that cannot be made fails the job, named when the job
// has several.
func planGeometryStep(j *job) error {
	width, height := j.upright()
	for i := range j.outputs {
		o := &j.outputs[i]
		g, err := planGeometry(width, height, o.spec)
		if err != nil {
			var e *Error
			if len(j.outputs) > 1 && errors.As(err, &e) {
				e.Message = "output " + strconv.Quote(o.name) + ": " + e.Message
			}
			return err
		}
		o.geometry = g
		if area(g.Crop) < area(j.outputs[j.smallest].geometry.Crop) {
			j.smallest = i
		}
	}
	return nil
}

func area(r image.Rectangle) int { return r.Dx() * r.Dy() }

// upright is the source's size once turned upright.
func (j *job) upright() (width, height int) {
	if transposes(j.orientation) {
		return j.header.Height, j.header.Width
	}
	return j.header.Width, j.header.Height
}

// stored turns an upright size into the stored (not yet upright) orientation.
func (j *job) stored(p image.Point) image.Point {
	if transposes(j.orientation) {
		return image.Pt(p.Y, p.X)
	}
	return p
}

// decodes counts the decodes every engine starts, for the tests that show a job of
// several outputs decodes its source once.
var decodes atomic.Int64

func decodeStep(j *job) (err error) {
	// Every output is scaled from this image with a margin of shrinkMargin; the
	// largest scale in each direction decides how far it may be shrunk first.
	var largest image.Point
	for _, o := range j.outputs {
		s := j.stored(o.geometry.Scale)
		largest = image.Pt(max(largest.X, s.X), max(largest.Y, s.Y))
	}
	j.img, err = decodeShrunk(j.src, j.header, largest.Mul(shrinkMargin))
	return err
}

// resizeStep scales the stored (not yet upright) pixels, so the target's sides are
// swapped for orientations that transpose.
func resizeStep(j *job, o *output) error {
	size := j.stored(o.geometry.Scale)
	o.img = scaleImage(j.img, size.X, size.Y)
	if image.Image(o.img) == j.img {
		// The decoded image is already this output's size: the next steps change
		// pixels in place, and the other outputs still need them as they are.
		o.img = cloneRGBA(o.img)
	}
	return nil
}

func orientStep(j *job, o *output) error {
	o.img = orient(o.img, j.orientation)
	return nil
}

func cropStep(_ *job, o *output) error {
	o.geometry.Crop = cropFor(o, func() image.Rectangle {
		return smartCrop(o.img, o.geometry, o.spec.Gravity)
	})
	o.img = crop(o.img, o.geometry.Crop)
	return nil
}

func flattenStep(_ *job, o *output) error {
	if o.spec.Format == FormatJPEG {
		flattenOnWhite(o.img)
	}
	return nil
}

// placeholderStep makes the job's placeholder from the smallest output's pixels,
// before they are encoded.
func placeholderStep(j *job, o *output) error {
	if o == &j.outputs[j.smallest] {
		j.placeholder = makePlaceholder(o.img)
	}
	return nil
}

func encodeStep(_ *job, o *output) (err error) {
	start := time.Now()
	o.data, err = encode(o.img, o.spec.Format, o.spec.Quality)
	o.encodeTime = time.Since(start)
	o.img = nil // done with: the next output may use the memory
	return err
}

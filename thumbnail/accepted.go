package thumbnail

// AcceptedList names the input formats e decodes, for people: "JPEG, PNG,
// GIF and WebP".
func AcceptedList(e Engine) string { return acceptedList(e) }

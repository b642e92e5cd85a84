// Package deploy holds the checks of the container files at the repository
// root (compose.yaml, Dockerfile) against the service they run, and, in
// deploy/healthcheck, the image's health check program.
package deploy

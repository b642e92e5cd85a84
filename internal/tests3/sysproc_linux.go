package tests3

import "syscall"

// sysProcAttr kills versitygw when the test binary dies without cleaning up
// (a timeout panic, a SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

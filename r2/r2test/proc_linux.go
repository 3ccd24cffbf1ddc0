package r2test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill versitygw if the test process dies
// first (a killed `go test` must not leave a gateway behind).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

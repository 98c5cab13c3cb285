package netlab_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/flexhook/flexhook/internal/netlab"
)

type slogLogger struct{}

func (slogLogger) Logf(format string, args ...any) { slog.Info(fmt.Sprintf(format, args...)) }

// A three-node vxlan network: start every node, then ping node 2's pod
// address from node 1's. (Needs root; main must call netlab.HandleReexec
// first.)
func Example() {
	ctx := context.Background()
	lab, err := netlab.New(ctx, slogLogger{}, netlab.Nodes(3), netlab.Flexhook("bin/flexhook"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	for i := 1; i <= lab.Nodes(); i++ {
		if err := lab.StartNode(ctx, i, "--preset", "vxlan", "--trace"); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := lab.Ping(ctx, 1, lab.PodAddr(2)); err != nil {
		fmt.Println(err)
	}
}

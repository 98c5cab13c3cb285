package shell_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/runner/shell"
)

// vxlanSubnetAdd is SubnetAddCommand of the published vxlan recipe
// (shared/recipes/vxlan.json), verbatim.
const vxlanSubnetAdd = "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; ip route add $SUBNET nexthop via $SUBNET_IP dev $IF_NAME onlink && arp -s $SUBNET_IP $VTEP dev $IF_NAME && bridge fdb add $VTEP dev $IF_NAME self dst $PUBLIC_IP"

func TestDryRunVxlanSubnetAdd(t *testing.T) {
	f := newFixture(t, shell.DryRun(true))
	res, err := f.sh.Run(t.Context(), shell.Request{
		Hook:   parse(t, hooks.SubnetAdd, vxlanSubnetAdd),
		Env:    []string{"SUBNET=10.50.2.0/24", "PUBLIC_IP=192.0.2.2"},
		Stdin:  "b2:d1:fc:40:8d:2f\n",
		Subnet: "10.50.2.0/24",
	})
	require.NoError(t, err)
	assert.Empty(t, res.Stdout)
	assert.Equal(t, `# SubnetAddCommand SUBNET=10.50.2.0/24
+ cut -d/ -f 1
+ ip route add 10.50.2.0/24 nexthop via 10.50.2.0 dev flannel-vxlan onlink
+ arp -s 10.50.2.0 b2:d1:fc:40:8d:2f dev flannel-vxlan
+ bridge fdb add b2:d1:fc:40:8d:2f dev flannel-vxlan self dst 192.0.2.2
`, f.trace.String())
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFixture(t, shell.DryRun(true))
	// A file that exists before, to check that nothing rewrites it.
	data := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.WriteFile(data, []byte("a\n"), 0o600))
	src := `touch made
ip link add flexhook-dry0 type dummy
echo key | tee teefile
V=$(echo 10.1.2.0/24 | cut -d/ -f1); echo "v=$V"
echo hi > redirected; echo more >> appended
sed -i s/a/X/ "$DATA"; sed --in-place=.bak s/a/X/ "$DATA"
sed s/a/b/ "$DATA"
sed 's/a/c/w written' "$DATA"
awk '{ print "awk " $0 > "awkfile" }' "$DATA"
awk '{ print "awk:" $0 }' "$DATA"
sort -o sorted "$DATA"
cat "$DATA"
mkdir made-dir`
	rec := &recorder{}
	sh, err := shell.New(shell.Dir(f.dir), shell.DryRun(true), shell.Trace(rec))
	require.NoError(t, err)
	res, err := sh.Run(t.Context(), shell.Request{Hook: parse(t, hooks.PostStartup, src), Env: []string{"DATA=" + data}})
	require.NoError(t, err)
	assert.Equal(t, "key\nv=10.1.2.0\nb\nawk:a\n", res.Stdout, "pure tools and tee ran; nothing else printed")
	assert.Empty(t, dirEntries(t, f.dir), "dry-run created a file")
	got, err := os.ReadFile(data)
	require.NoError(t, err)
	assert.Equal(t, "a\n", string(got))
	assert.Equal(t, []string{filepath.Base(data)}, dirEntries(t, filepath.Dir(data)))

	ran := map[string]bool{}
	for _, ev := range rec.evs {
		ran[shell.FormatArgv(ev.Argv)] = !ev.Skipped
	}
	assert.Equal(t, map[string]bool{
		"touch made":                           false,
		"ip link add flexhook-dry0 type dummy": false,
		"tee teefile":                          false,
		"cut -d/ -f1":                          true,
		"'>' redirected":                       false,
		"'>>' appended":                        false,
		"sed -i s/a/X/ " + data:                false,
		"sed --in-place=.bak s/a/X/ " + data:   false,
		"sed s/a/b/ " + data:                   true,
		"sed 's/a/c/w written' " + data:        true, // run with --sandbox, which refuses w
		"awk '{ print \"awk \" $0 > \"awkfile\" }' " + data: awkIsGawk, // gawk runs it sandboxed: it fails, writing nothing
		"awk '{ print \"awk:\" $0 }' " + data:               true,
		"sort -o sorted " + data:                            false,
		"cat " + data:                                       false,
		"mkdir made-dir":                                    false,
	}, ran)
}

var awkIsGawk = testutil.AwkIsGawk()

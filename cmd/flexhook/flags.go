package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/flexhook/flexhook/internal/suggest"
)

// envPrefix is prepended to every flag's environment variable:
// --etcd-endpoints reads FLEXHOOK_ETCD_ENDPOINTS.
const envPrefix = "FLEXHOOK"

// Flag specs. Every field carries its flag name (`flag`), its environment
// key (`envconfig`, always the flag name in upper snake case, checked by a
// test), its default (`default`, applied by envconfig when the variable is
// unset), a placeholder for the help text (`arg`) and the help text
// (`usage`). Fields tagged hidden:"true" work but are not listed in -h.

// CommonFlags are the flags of every command. The embedded flag groups are
// exported because envconfig skips unexported embedded structs.
type CommonFlags struct {
	LogLevel  logLevel  `flag:"log-level" envconfig:"LOG_LEVEL" default:"info" arg:"LEVEL" usage:"log level: debug, info, warn or error"`
	LogFormat logFormat `flag:"log-format" envconfig:"LOG_FORMAT" default:"text" arg:"FORMAT" usage:"log format: text (key=value, one line per event, as journald keeps it) or json (one object per line)"`
}

// SourceFlags select the config: a file or an embedded preset.
type SourceFlags struct {
	Config string `flag:"config" envconfig:"CONFIG" arg:"FILE" usage:"flannel net-conf.json (run: default is the store's config, <prefix>/config in etcd)"`
	Preset string `flag:"preset" envconfig:"PRESET" arg:"NAME" usage:"embedded preset to run (see flexhook presets)"`
}

// StoreFlags select and reach the lease store: the file store's, etcd's
// (EtcdFlags) or Kubernetes' (KubeFlags).
type StoreFlags struct {
	Store       string        `flag:"store" envconfig:"STORE" default:"/var/lib/flexhook/leases" arg:"DIR" usage:"file lease store directory, shared by the nodes of one machine (unused with --etcd-endpoints)"`
	StoreResync time.Duration `flag:"store-resync" envconfig:"STORE_RESYNC" hidden:"true" usage:"file store re-list interval (tests)"`
	LeaseTTL    time.Duration `flag:"lease-ttl" envconfig:"LEASE_TTL" hidden:"true" usage:"lease TTL instead of flannel's 24h (tests)"`
	EtcdFlags
	KubeFlags
}

// EtcdFlags reach etcd.
type EtcdFlags struct {
	EtcdEndpoints string `flag:"etcd-endpoints" envconfig:"ETCD_ENDPOINTS" arg:"URLS" usage:"comma-separated etcd endpoints; use etcd instead of the file store"`
	EtcdPrefix    string `flag:"etcd-prefix" envconfig:"ETCD_PREFIX" default:"/coreos.com/network" arg:"PREFIX" usage:"etcd key prefix (flannel's)"`
	EtcdCAFile    string `flag:"etcd-cafile" envconfig:"ETCD_CAFILE" arg:"FILE" usage:"etcd TLS CA certificate"`
	EtcdCertFile  string `flag:"etcd-certfile" envconfig:"ETCD_CERTFILE" arg:"FILE" usage:"etcd TLS client certificate"`
	EtcdKeyFile   string `flag:"etcd-keyfile" envconfig:"ETCD_KEYFILE" arg:"FILE" usage:"etcd TLS client key"`
	EtcdUsername  string `flag:"etcd-username" envconfig:"ETCD_USERNAME" arg:"NAME" usage:"etcd user name"`
	EtcdPassword  secret `flag:"etcd-password" envconfig:"ETCD_PASSWORD" arg:"PASSWORD" usage:"etcd password (prefer the environment variable)"`
}

// KubeFlags are flanneld's kube subnet manager flags, same names and
// defaults.
type KubeFlags struct {
	KubeSubnetMgr        bool   `flag:"kube-subnet-mgr" envconfig:"KUBE_SUBNET_MGR" usage:"use Kubernetes: the subnet is this node's spec.podCIDRs and leases are node annotations (flanneld's kube subnet manager)"`
	KubeAPIURL           string `flag:"kube-api-url" envconfig:"KUBE_API_URL" arg:"URL" usage:"Kubernetes API server URL (default: the kubeconfig's, or in-cluster)"`
	KubeconfigFile       string `flag:"kubeconfig-file" envconfig:"KUBECONFIG_FILE" arg:"FILE" usage:"kubeconfig file (default: $KUBECONFIG as kubectl reads it, else the pod's service account, else ~/.kube/config outside a pod)"`
	KubeAnnotationPrefix string `flag:"kube-annotation-prefix" envconfig:"KUBE_ANNOTATION_PREFIX" default:"flannel.alpha.coreos.com" arg:"PREFIX" usage:"node annotation prefix (flanneld's)"`
	NodeName             string `flag:"node-name" envconfig:"NODE_NAME" arg:"NAME" usage:"with --kube-subnet-mgr: this node's Node (default: NODE_NAME, else the spec.nodeName of the pod POD_NAMESPACE/POD_NAME, as flanneld finds it)"`
	NetConfigPath        string `flag:"net-config-path" envconfig:"NET_CONFIG_PATH" default:"/etc/kube-flannel/net-conf.json" arg:"FILE" usage:"with --kube-subnet-mgr: net-conf.json when no --config or --preset is given (kube-flannel's ConfigMap)"`
}

// StateDirFlags names the node's state dir, which `run` writes and
// `status` reads.
type StateDirFlags struct {
	StateDir string `flag:"state-dir" envconfig:"STATE_DIR" default:"/var/lib/flexhook/state" arg:"DIR" usage:"per-node state directory; hooks run in it"`
}

type runFlags struct {
	CommonFlags
	SourceFlags
	StoreFlags
	StateDirFlags
	NodeFlags
	HookFlags
	MetricsFlags
	DryRun                    bool            `flag:"dry-run" envconfig:"DRY_RUN" usage:"read the store, write no lease, print commands instead of changing the system"`
	BackendData               string          `flag:"backend-data" envconfig:"BACKEND_DATA" arg:"DATA" usage:"with --dry-run: simulated PreStartupCommand output"`
	StoreTimeout              time.Duration   `flag:"store-timeout" envconfig:"STORE_TIMEOUT" default:"15s" arg:"DURATION" usage:"deadline of each lease store call (acquire, renew, list); a slow or partitioned store is retried, never waited on"`
	BackendDataPattern        string          `flag:"backend-data-pattern" envconfig:"BACKEND_DATA_PATTERN" arg:"REGEX" usage:"refuse remote leases whose BackendData does not match REGEX as a whole (default: the preset's shape: a MAC for vxlan, a WireGuard key for wireguard, empty for host-gw)"`
	ShutdownOnStop            bool            `flag:"shutdown-on-stop" envconfig:"SHUTDOWN_ON_STOP" usage:"run ShutdownCommand when stopped (SIGTERM, SIGINT), as flexhook did before; by default a stop is a restart that leaves the backend and routes in place, and leaving the cluster is flexhook leave (SIGUSR1) or the own lease's deletion"`
	SetNodeNetworkUnavailable bool            `flag:"set-node-network-unavailable" envconfig:"SET_NODE_NETWORK_UNAVAILABLE" default:"true" usage:"with --kube-subnet-mgr: set the Node's NetworkUnavailable condition to False once PostStartupCommand succeeded (flanneld's)"`
	IPMasq                    bool            `flag:"ip-masq" envconfig:"IP_MASQ" usage:"masquerade pod traffic that leaves the Network with the node's address, as flanneld's --ip-masq does (nftables tables flannel-ipv4/flannel-ipv6, removed when the node leaves); subnet.env then says FLANNEL_IPMASQ=true so flannel's CNI plugin does not masquerade again"`
	RenewMargin               minutesDuration `flag:"subnet-lease-renew-margin" envconfig:"SUBNET_LEASE_RENEW_MARGIN" default:"60" arg:"MINUTES" usage:"renew the lease this long before it expires (minutes, or a duration such as 90m)"`
}

// NodeFlags say how other nodes reach this one, and what it writes for
// its pods (subnet.env).
type NodeFlags struct {
	PublicIP   string `flag:"public-ip" envconfig:"PUBLIC_IP" arg:"IP" usage:"IPv4 address other nodes reach this node on (default: first IPv4 of --iface)"`
	PublicIPv6 string `flag:"public-ipv6" envconfig:"PUBLIC_IPV6" arg:"IP" usage:"IPv6 address other nodes reach this node on (default with EnableIPv6: first global IPv6 of --iface)"`
	Iface      string `flag:"iface" envconfig:"IFACE" arg:"NAME" usage:"interface for the public IP and the MTU (default: the interface of the IPv4 default route)"`
	MTU        int    `flag:"mtu" envconfig:"MTU" default:"0" arg:"N" usage:"FLANNEL_MTU in subnet.env; wins over the config's Backend.MTU (default: the lowest MTU on the path to other nodes, read from the kernel's routes into Network after PostStartupCommand and each batch of hooks; the underlay's while there is none)"`
	SubnetFile string `flag:"subnet-file" envconfig:"SUBNET_FILE" default:"/run/flannel/subnet.env" arg:"PATH" usage:"flannel subnet.env written after the lease is acquired"`
}

// HookFlags shape how hooks run.
type HookFlags struct {
	Trace              bool          `flag:"trace" envconfig:"TRACE" usage:"log every command a hook runs"`
	HookTimeout        time.Duration `flag:"hook-timeout" envconfig:"HOOK_TIMEOUT" default:"2m" arg:"DURATION" usage:"kill a hook and its process group after this long"`
	WireguardUserspace string        `flag:"wireguard-userspace" envconfig:"WIREGUARD_USERSPACE" default:"auto" arg:"MODE" usage:"start wireguard-go when the kernel lacks wireguard: auto, always or never"`
	ReplaceExisting    bool          `flag:"replace-existing" envconfig:"REPLACE_EXISTING" default:"true" usage:"when ip route/neigh/addr add or bridge fdb add fails because the entry exists, run it again as replace (so retries and changed leases converge); --replace-existing=false to turn off"`
	FastPath           bool          `flag:"fast-path" envconfig:"FAST_PATH" default:"true" usage:"do the presets' ip route/addr/link/neigh, bridge fdb and arp -s commands through rtnetlink, their wg set commands through wgctrl (kernel WireGuard or wireguard-go's socket) and wg genkey and wg pubkey, inside flexhook instead of running the binaries; other forms and every failure run the real binary, so errors read as the real tool's; --fast-path=false to run every command's binary"`
	InprocessTools     bool          `flag:"inprocess-tools" envconfig:"INPROCESS_TOOLS" default:"true" usage:"run cut, cat, tr, head and tail inside flexhook instead of forking them, for the forms they reproduce exactly (anything else runs the real binary); --inprocess-tools=false to turn off"`
	Parallel           int           `flag:"parallel" envconfig:"PARALLEL" default:"1" arg:"N" usage:"run the hooks of up to N subnets at once (1: flannel's serial order; safe when hooks touch only their own subnet's routes, neighbours and fdb entries, as the presets do); each subnet's hooks keep their order, and --dry-run runs serially"`
	ResyncInterval     time.Duration `flag:"resync-interval" envconfig:"RESYNC_INTERVAL" default:"0s" arg:"DURATION" usage:"run SubnetAddCommand again for every applied lease this often, repairing state changed behind flexhook's back (0: off)"`
}

// MetricsFlags say where /metrics, /healthz and /readyz are served.
type MetricsFlags struct {
	MetricsAddr string `flag:"metrics-addr" envconfig:"METRICS_ADDR" arg:"HOST:PORT" usage:"serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (default: off)"`
	HealthzIP   string `flag:"healthz-ip" envconfig:"HEALTHZ_IP" default:"0.0.0.0" arg:"IP" usage:"flanneld's name for the --metrics-addr host, used with --healthz-port"`
	HealthzPort int    `flag:"healthz-port" envconfig:"HEALTHZ_PORT" default:"0" arg:"PORT" usage:"flanneld's name for the --metrics-addr port (0: off)"`
}

type checkFlags struct {
	CommonFlags
	SourceFlags
	Host   bool   `flag:"host" envconfig:"HOST" usage:"also check this host: every command the hooks name is on PATH, and the process may change the network (CAP_NET_ADMIN); exit 1 when not"`
	Output string `flag:"output" short:"o" envconfig:"OUTPUT" default:"text" arg:"text|json" usage:"text: ok, lint and host lines; json: a versioned document with snake_case keys, for scripts (same exit codes)"`
}

type dryRunFlags struct {
	CommonFlags
	SourceFlags
	Subnet             string   `flag:"subnet" envconfig:"SUBNET" arg:"CIDR" usage:"this node's subnet (required)"`
	PublicIP           string   `flag:"public-ip" envconfig:"PUBLIC_IP" arg:"IP" usage:"this node's public IPv4 address (required)"`
	BackendData        string   `flag:"backend-data" envconfig:"BACKEND_DATA" arg:"DATA" usage:"simulated PreStartupCommand output (this node's BackendData)"`
	Peer               peerList `flag:"peer" envconfig:"PEER" arg:"SUBNET,PUBLIC_IP[,DATA]" usage:"a remote lease; repeat for more (env: space-separated)"`
	BackendDataPattern string   `flag:"backend-data-pattern" envconfig:"BACKEND_DATA_PATTERN" arg:"REGEX" usage:"as for run: peers whose DATA does not match are refused"`
}

type leasesFlags struct {
	CommonFlags
	SourceFlags
	StoreFlags
	BackendDataPattern string `flag:"backend-data-pattern" envconfig:"BACKEND_DATA_PATTERN" arg:"REGEX" usage:"as for run: the BackendData shape leases are checked against"`
	Output             string `flag:"output" short:"o" envconfig:"OUTPUT" default:"text" arg:"text|json" usage:"list: a table, or a versioned document with snake_case keys (json), for scripts"`
}

type presetsFlags struct {
	CommonFlags
}

// flagSet is a flag.FlagSet bound to a spec struct.
type flagSet struct {
	*flag.FlagSet
	spec   any
	hidden map[string]bool
	args   map[string]string
	help   func() // prints the usage (for -h)
}

// newFlagSet fills spec from FLEXHOOK_* environment variables (with the
// `default` tags) and registers a flag for every field, whose default is
// the value the environment gave: explicit flags then override.
func newFlagSet(name string, spec any, synopsis string, out io.Writer) (*flagSet, error) {
	if err := envconfig.Process(envPrefix, spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, envError(pe)
		}
		return nil, usageErrorf("environment: %v", err)
	}
	fs := &flagSet{
		FlagSet: flag.NewFlagSet(name, flag.ContinueOnError),
		spec:    spec,
		hidden:  map[string]bool{},
		args:    map[string]string{},
	}
	fs.SetOutput(io.Discard)
	fs.register(reflect.ValueOf(spec).Elem())
	fs.Usage = func() {} // the flag package calls it on every error: parse prints it for -h only
	fs.help = func() { fs.printUsage(out, synopsis) }
	return fs, nil
}

// envError names the variable, its value (unless it is a secret) and
// what was expected: "environment FLEXHOOK_HOOK_TIMEOUT="5x": want a
// duration such as 30s or 2m (time: unknown unit "x" in duration "5x")".
// A flag type of flexhook's own says what it wants in its error.
func envError(pe *envconfig.ParseError) error {
	value := strconv.Quote(pe.Value)
	if strings.Contains(strings.ToLower(pe.TypeName), "secret") {
		value = "(secret, not shown)"
	}
	want := map[string]string{
		"time.Duration": "a duration such as 30s or 2m", "bool": "true or false",
		"int": "an integer", "int64": "an integer", "uint": "a non-negative integer", "float64": "a number",
	}[pe.TypeName]
	switch {
	case want != "" && pe.Err != nil:
		return usageErrorf("environment %s=%s: want %s (%v)", pe.KeyName, value, want, pe.Err)
	case want != "":
		return usageErrorf("environment %s=%s: want %s", pe.KeyName, value, want)
	}
	return usageErrorf("environment %s=%s: %v", pe.KeyName, value, pe.Err)
}

// parseFlags fills spec from the environment and args for a command that
// takes no positional arguments.
func parseFlags(name string, spec any, synopsis string, args []string, out io.Writer) error {
	fs, err := newFlagSet(name, spec, synopsis, out)
	if err != nil {
		return err
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("%s: unexpected argument %q", name, pos[0])
	}
	return nil
}

func (fs *flagSet) register(v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if f.Anonymous {
			fs.register(fv)
			continue
		}
		name := f.Tag.Get("flag")
		if name == "" {
			continue
		}
		usage := f.Tag.Get("usage")
		switch p := fv.Addr().Interface().(type) {
		case flag.Value:
			fs.Var(p, name, usage)
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		default:
			panic(fmt.Sprintf("flag %s: unsupported type %T", name, p))
		}
		if f.Tag.Get("hidden") == "true" {
			fs.hidden[name] = true
		}
		fs.args[name] = f.Tag.Get("arg")
		if short := f.Tag.Get("short"); short != "" { // -o for --output: the same value, not listed twice
			fs.Var(fs.Lookup(name).Value, short, usage)
			fs.hidden[short] = true
		}
	}
}

// parse parses flags and positional arguments in any order
// (`leases remove 10.50.1.0/24 --store DIR`) and returns the positionals.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, errHelp
			}
			return nil, fs.flagError(err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagError turns the flag package's error into one line in flexhook's
// spelling (--name, not -name), with a did-you-mean for a flag that does
// not exist and a pointer to the command's -h.
func (fs *flagSet) flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimLeft(name, "-")
		msg = fmt.Sprintf("unknown flag --%s", name)
		var names []string
		fs.VisitAll(func(f *flag.Flag) {
			if !fs.hidden[f.Name] {
				names = append(names, f.Name)
			}
		})
		if c, ok := suggest.Closest(name, names); ok {
			msg += fmt.Sprintf(" (did you mean --%s?)", c)
		}
	} else {
		if m := badValue.FindStringSubmatch(msg); m != nil {
			if f := fs.Lookup(m[1]); f != nil {
				if want := flagWants[fmt.Sprintf("%T", f.Value)]; want != "" {
					msg = strings.TrimSuffix(msg, ": parse error") + ": want " + want
				}
			}
		}
		msg = flagSpelling.ReplaceAllString(msg, "$1--$2")
	}
	return usageErrorf("%s: %s; see flexhook %s -h", fs.Name(), msg, fs.Name())
}

// badValue finds the flag the flag package's "invalid value" error names.
var badValue = regexp.MustCompile(`^invalid (?:boolean )?value ".*" for (?:flag )?-([a-z0-9-]+): `)

// flagWants says what a flag of the flag package's own types takes, for
// its "parse error", which says nothing.
var flagWants = map[string]string{
	"*flag.durationValue": "a duration such as 30s or 2m", "*flag.intValue": "an integer", "*flag.boolValue": "true or false",
}

// flagSpelling finds a flag the flag package names with one dash.
var flagSpelling = regexp.MustCompile(`(^|\s)-([a-z0-9][a-z0-9-]*)`)

func (fs *flagSet) printUsage(w io.Writer, synopsis string) {
	fmt.Fprintf(w, "usage: %s\n\nflags (each also read from FLEXHOOK_<FLAG>, e.g. --state-dir from FLEXHOOK_STATE_DIR):\n", synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		if fs.hidden[f.Name] {
			return
		}
		line := "  --" + f.Name
		if a := fs.args[f.Name]; a != "" {
			line += " " + a
		}
		fmt.Fprintf(w, "%s\n      %s", line, f.Usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// logLevel is a slog.Level usable as a flag and an environment value.
type logLevel slog.Level

func (l *logLevel) Set(s string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	*l = logLevel(lv)
	return nil
}

func (l *logLevel) Decode(s string) error { return l.Set(s) }
func (l *logLevel) String() string        { return strings.ToLower(slog.Level(*l).String()) }

// logFormat is --log-format: text or json.
type logFormat string

func (f *logFormat) Set(s string) error {
	if s != "text" && s != "json" {
		return fmt.Errorf("log format %q: want text or json", s)
	}
	*f = logFormat(s)
	return nil
}

func (f *logFormat) Decode(s string) error { return f.Set(s) }
func (f *logFormat) String() string        { return string(*f) }

// secret is a string flag whose value never appears in help text or errors.
type secret string

func (s *secret) Set(v string) error    { *s = secret(v); return nil }
func (s *secret) Decode(v string) error { return s.Set(v) }
func (s *secret) String() string        { return "" }

// minutesDuration is flanneld's --subnet-lease-renew-margin: a plain
// integer is minutes; a Go duration ("90m", "1h30m") is accepted too.
type minutesDuration time.Duration

func (m *minutesDuration) Set(s string) error {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return fmt.Errorf("%q: must be positive", s)
		}
		*m = minutesDuration(time.Duration(n) * time.Minute)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want minutes or a duration such as 90m", s)
	}
	if d <= 0 {
		return fmt.Errorf("%q: must be positive", s)
	}
	*m = minutesDuration(d)
	return nil
}

func (m *minutesDuration) Decode(s string) error { return m.Set(s) }
func (m *minutesDuration) String() string        { return time.Duration(*m).String() }

// peerList collects repeated --peer flags. From the environment it is a
// space-separated list (a peer's DATA may contain commas). The first
// explicit flag replaces what the environment gave.
type peerList struct {
	values  []string
	fromEnv bool
}

func (p *peerList) Set(s string) error {
	if p.fromEnv {
		p.values, p.fromEnv = nil, false
	}
	p.values = append(p.values, s)
	return nil
}

func (p *peerList) Decode(s string) error {
	p.values, p.fromEnv = strings.Fields(s), true
	return nil
}

func (p *peerList) String() string {
	if p == nil {
		return "[]"
	}
	return "[" + strings.Join(p.values, " ") + "]"
}

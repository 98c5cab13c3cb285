package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// API is the part of the Kubernetes core/v1 API a kube subnet manager
// uses: the RBAC of deploy/kube-flexhook.yml grants exactly the node
// calls (and a pod read for POD_NAME lookups).
type API interface {
	GetNode(ctx context.Context, name string) (*corev1.Node, error)
	ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// PatchNodeStatus patches the Node through its status subresource.
	PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error)
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// restAPI is API on a REST client that knows only core/v1. client-go's
// typed clients register every API group of Kubernetes in their scheme,
// which would make the binary 40 MB larger.
type restAPI struct {
	c  *rest.RESTClient
	pc runtime.ParameterCodec
}

var _ API = (*restAPI)(nil)

// NewAPI returns the API on cfg (a kubeconfig's or the in-cluster one).
func NewAPI(cfg *rest.Config) (API, error) {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	c := rest.CopyConfig(cfg)
	gv := corev1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	// Protobuf on the wire, as kubelet and kube-proxy use it: a Node list
	// decodes several times faster and with less garbage than in JSON.
	// An API server (or proxy) that answers in JSON is still understood.
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	return &restAPI{c: rc, pc: runtime.NewParameterCodec(scheme)}, nil
}

func (a *restAPI) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{}
	return n, a.c.Get().Resource("nodes").Name(name).Do(ctx).Into(n)
}

func (a *restAPI) ListNodes(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	l := &corev1.NodeList{}
	return l, a.c.Get().Resource("nodes").VersionedParams(&opts, a.pc).Do(ctx).Into(l)
}

func (a *restAPI) WatchNodes(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return a.c.Get().Resource("nodes").VersionedParams(&opts, a.pc).Watch(ctx)
}

func (a *restAPI) PatchNodeStatus(ctx context.Context, name string, pt types.PatchType, data []byte) (*corev1.Node, error) {
	n := &corev1.Node{}
	return n, a.c.Patch(pt).Resource("nodes").Name(name).SubResource("status").Body(data).Do(ctx).Into(n)
}

func (a *restAPI) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	return p, a.c.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(p)
}

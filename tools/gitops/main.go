// exactly-gitops reads Kubernetes objects as JSON (one object, or a List such as
// `kubectl get ... -o json` prints) from standard input and prints, for each, what the GitOps
// tools would say of it:
//
//   - kstatus: the status Flux (and kpt, cli-utils' apply) computes, from the real library
//     (sigs.k8s.io/cli-utils/pkg/kstatus/status);
//   - argocd: the health Argo CD computes with the Lua health checks of an argocd-cm snippet
//     (--argocd FILE), run with gopher-lua as Argo CD runs them: only the package, base and
//     table libraries open, the object as the global `obj`, one second at most.
//
// One JSON line per object:
//
//	{"kind":"Topic","namespace":"a","name":"t","kstatus":{"status":"Current","message":"..."},
//	 "argocd":{"status":"Healthy","message":"..."}}
//
// The test suite runs it on the operator's real objects (tests/tests/integration/gitops.rs);
// `make tools` builds it into the tools cache (tools/install.sh gitops).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// The prefix of argocd-cm keys holding a health check: `<prefix><group>_<kind>`.
const healthKeyPrefix = "resource.customizations.health."

// Verdict is one tool's answer for one object.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Line is what is printed for one object.
type Line struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Name       string   `json:"name"`
	Kstatus    Verdict  `json:"kstatus"`
	ArgoCD     *Verdict `json:"argocd,omitempty"`
}

func main() {
	argocd := flag.String("argocd", "", "an argocd-cm ConfigMap (YAML) whose resource.customizations.health.<group>_<kind> scripts to run")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [--argocd FILE] < objects.json\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *argocd); err != nil {
		fmt.Fprintf(os.Stderr, "exactly-gitops: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, argocdFile string) error {
	var scripts map[string]string
	if argocdFile != "" {
		var err error
		if scripts, err = healthScripts(argocdFile); err != nil {
			return err
		}
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	objects, err := decodeObjects(data)
	if err != nil {
		return err
	}
	encoder := json.NewEncoder(out)
	for _, obj := range objects {
		line := Line{
			APIVersion: obj.GetAPIVersion(),
			Kind:       obj.GetKind(),
			Namespace:  obj.GetNamespace(),
			Name:       obj.GetName(),
			Kstatus:    kstatusOf(obj),
		}
		if scripts != nil {
			verdict := argoHealthOf(obj, scripts)
			line.ArgoCD = &verdict
		}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// decodeObjects reads one object or a List of them.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("standard input is not a Kubernetes object or List: %w", err)
	}
	if !u.IsList() {
		return []*unstructured.Unstructured{u}, nil
	}
	list, err := u.ToList()
	if err != nil {
		return nil, err
	}
	objects := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		objects = append(objects, &list.Items[i])
	}
	return objects, nil
}

func kstatusOf(obj *unstructured.Unstructured) Verdict {
	result, err := status.Compute(obj)
	if err != nil {
		return Verdict{Status: "Error", Message: err.Error()}
	}
	return Verdict{Status: result.Status.String(), Message: result.Message}
}

// healthScripts reads the health checks of an argocd-cm ConfigMap, by Argo CD's key for a kind:
// `<group>/<kind>` (just `<kind>` for the core group).
func healthScripts(file string) (map[string]string, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(text, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%s: a ConfigMap (argocd-cm) is expected, not %q", file, cm.Kind)
	}
	scripts := map[string]string{}
	for key, script := range cm.Data {
		groupKind, ok := strings.CutPrefix(key, healthKeyPrefix)
		if !ok {
			continue
		}
		group, kind, ok := strings.Cut(groupKind, "_")
		if !ok {
			return nil, fmt.Errorf("%s: key %q is not %s<group>_<kind>", file, key, healthKeyPrefix)
		}
		scripts[group+"/"+kind] = script
	}
	if len(scripts) == 0 {
		return nil, fmt.Errorf("%s: no %s<group>_<kind> key", file, healthKeyPrefix)
	}
	return scripts, nil
}

// The health statuses Argo CD accepts from a script; any other is Unknown.
var healthStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// argoHealthOf runs the object's health check as Argo CD does (util/lua in argo-cd). A failing
// script is reported as Argo CD shows it: Unknown, with the error.
func argoHealthOf(obj *unstructured.Unstructured, scripts map[string]string) Verdict {
	gvk := obj.GroupVersionKind()
	key := gvk.Kind
	if gvk.Group != "" {
		key = gvk.Group + "/" + gvk.Kind
	}
	script, ok := scripts[key]
	if !ok {
		return Verdict{Status: "", Message: "no health check for " + key + ": Argo CD does not assess it"}
	}
	verdict, err := runHealthScript(obj, script)
	if err != nil {
		return Verdict{Status: "Unknown", Message: err.Error()}
	}
	return verdict
}

func runHealthScript(obj *unstructured.Unstructured, script string) (Verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Verdict{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return Verdict{}, err
	}
	returned, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Verdict{}, fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	verdict := Verdict{
		Status:  lua.LVAsString(returned.RawGetString("status")),
		Message: lua.LVAsString(returned.RawGetString("message")),
	}
	if !healthStatuses[verdict.Status] {
		return Verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return verdict, nil
}

// toLua converts a decoded JSON value as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	case nil:
		return lua.LNil
	}
	return lua.LNil
}


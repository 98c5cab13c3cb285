{{/*
flexhook.netconf is the preset's net-conf.json, byte for byte, with only
its "Network" value replaced by .Values.network. A chart cannot read
files outside its directory: presets/ holds copies of the presets
package's files, kept equal to them by integration/kube's tests.
*/}}
{{- define "flexhook.netconf" -}}
{{- $path := printf "presets/%s.json" .Values.preset -}}
{{- $text := .Files.Get $path -}}
{{- if not $text -}}
{{- fail (printf "preset %q: the chart has no %s (flexhook presets lists the presets)" .Values.preset $path) -}}
{{- end -}}
{{- $network := "\"Network\": \"[^\"]*\"" -}}
{{- if ne (len (regexFindAll $network $text -1)) 1 -}}
{{- fail (printf "%s: want exactly one \"Network\" to replace" $path) -}}
{{- end -}}
{{- regexReplaceAllLiteral $network $text (printf "\"Network\": \"%s\"" .Values.network) -}}
{{- end -}}

{{/* flexhook.image is flexhook's image reference. */}}
{{- define "flexhook.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

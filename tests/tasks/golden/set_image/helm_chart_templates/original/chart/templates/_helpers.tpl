{{- define "cart.fullname" -}}
{{ .Release.Name }}-cart
{{- end }}

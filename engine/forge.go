package engine

// forgeKinds maps Forge avi:ecosystem.migration:* eventTypes to kinds.
var forgeKinds = map[string]Kind{
	"avi:ecosystem.migration:triggered:listener":              KindListenerTriggered,
	"avi:ecosystem.migration:uploaded:app_data":               KindAppDataUploaded,
	"avi:ecosystem.migration:uploaded:event_file_list":        KindEventFileListUploaded,
	"avi:ecosystem.migration:completed:export_phase":          KindExportPhaseCompleted,
	"avi:ecosystem.migration:errored:listener":                KindListenerErrored,
	"avi:ecosystem.migration:requested:transfer_cancellation": KindCancellationRequested,
	"avi:ecosystem.migration:settled:transfer":                KindTransferSettled,
}

// ForgeEventType is the Forge spelling of k ("" for KindUnknown).
func ForgeEventType(k Kind) string {
	for t, v := range forgeKinds {
		if v == k {
			return t
		}
	}
	return ""
}

// ConnectEventType is the Connect spelling of k ("" for KindUnknown).
func ConnectEventType(k Kind) string {
	if k == KindUnknown || k == KindPlatformCalled || !k.Valid() {
		return ""
	}
	return string(k)
}

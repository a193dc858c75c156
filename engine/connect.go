package engine

// connectKinds maps Connect webhook eventTypes to kinds. The platform's
// Connect spelling has no export-phase or event-file-list events; their
// canonical names are accepted all the same.
var connectKinds = map[string]Kind{
	"listener-triggered":              KindListenerTriggered,
	"app-data-uploaded":               KindAppDataUploaded,
	"event-file-list-uploaded":        KindEventFileListUploaded,
	"export-phase-completed":          KindExportPhaseCompleted,
	"listener-errored":                KindListenerErrored,
	"transfer-cancellation-requested": KindCancellationRequested,
	"transfer-settled":                KindTransferSettled,
}

// connectClientKeys are the migrationDetails fields that name the tenant's
// installations; "unknown" means the product is not part of the migration.
var connectClientKeys = []string{"jiraClientKey", "confluenceClientKey"}

// Package platform is transferd's client of the Atlassian app migration
// platform: the calls a cloud app makes while and after it migrates a
// transfer, for Connect apps (signed as the app on the tenant's site) and for
// Forge apps (the app system token on api.atlassian.com).
//
// Connect, relative to the site's URL (the tenant's baseUrl; a Confluence
// site's ends in /wiki):
//
//	POST /rest/atlassian-connect/1/migration/progress/{transferId}  status, percent, message
//	GET  /rest/atlassian-connect/1/migration/mapping/{transferId}/page?namespace=&lastEntity=&pageSize=
//	POST /rest/atlassian-connect/1/migration/mapping/{transferId}/find?namespace=   ["key", …]
//	GET  /rest/atlassian-connect/1/migration/data/{transferId}/all   → [{s3Key, label}]
//	GET  /rest/atlassian-connect/1/migration/data/{s3Key}            → {url}
//	GET  /rest/atlassian-connect/1/migration/transfer/recent
//	GET  /rest/atlassian-connect/1/migration/error/{transferId}      → {exceptionType, safeStackTrace}
//	POST /rest/atlassian-connect/1/migration/feedback/{transferId}
//
// Forge, relative to the FIT's app.apiBaseUrl (https://api.atlassian.com by
// default), with the x-forge-oauth-system token as a bearer token:
//
//	POST /app/migration/forge/v1/message/{transferId}/status  {"status":"SUCCESS"|"FAILED","messageIds":[…]}
//	GET  /app/migration/forge/v1/mapping/{transferId}/page?…, POST …/find?namespace=
//	GET  /app/migration/forge/v1/data/{transferId}/all, GET …/data/{s3Key}
//
// Every request is retried on a transport error, a 5xx and a 429 (honouring
// Retry-After) with capped, jittered exponential backoff, within the
// caller's context and a bounded number of attempts; requests to one host
// are rate-limited. A reply the platform means as final (400, 403, 404, 409,
// …) is returned at once as a *StatusError: errors.Is(err, ErrSettled) for
// 403 and 409 (the transfer is settled, or its data gone), ErrRejected for
// 400 (the body was refused, or the transfer is past its 14 days).
//
// Client.Record, when set, is told of every call once it has its outcome
// (never the token or the secret), so the caller can keep it as an event of
// the transfer.
//
// Uncertain details, not confirmed by the platform's documentation: the
// shape of transfer/recent (read here as a list of objects carrying
// transferId and migrationDetails, unknown fields kept raw); whether a
// settle repeated after a lost reply gets 403 or 409 (both read as
// ErrSettled, and Call.Unanswered says an earlier attempt may have landed);
// the Forge feedback, error and recent routes (not offered here).
package platform

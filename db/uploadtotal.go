package db

// UploadTotal is what every finished /upload added up to (upload_totals):
// /stats shows it, and it outlives the process and River's job retention.
type UploadTotal struct {
	Files int64
	Bytes int64
}

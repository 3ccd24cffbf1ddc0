package r2

// OptionsFromEnv reads the R2_* variables of the SPEC through getenv (pass
// os.Getenv, or a lookup over a parsed .env), so every command names them
// the same way. Check Configured before New: ferry runs without R2.
func OptionsFromEnv(getenv func(string) string) Options {
	return Options{
		Endpoint:        getenv("R2_ENDPOINT"),
		AccountID:       getenv("R2_ACCOUNT_ID"),
		Bucket:          getenv("R2_BUCKET"),
		AccessKeyID:     getenv("R2_ACCESS_KEY_ID"),
		SecretAccessKey: getenv("R2_SECRET_ACCESS_KEY"),
		Folder:          getenv("R2_FOLDER"),
		PublicURL:       getenv("R2_PUBLIC_URL"),
	}
}

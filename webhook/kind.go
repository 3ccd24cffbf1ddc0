package webhook

import "github.com/ferry-dev/ferry/jobs"

// ParseUpdateKind is ParseUpdate that also says what the update is about
// (jobs.Classify), for the intake's count of updates by kind.
func ParseUpdateKind(body []byte) (int64, *jobs.Sighting, jobs.Kind, error) {
	if id, s, ok := parseChannelFile(body); ok {
		return id, s, jobs.KindChannelFile, nil
	}
	id, u, err := parseFull(body)
	if err != nil {
		return 0, nil, "", err
	}
	return id, jobs.SightingOf(u), jobs.Classify(u), nil
}

package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferry-dev/ferry/internal/browsertest"
)

// TestRendersAPage: the browser starts and runs a page's script.
func TestRendersAPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!doctype html><p id=p></p><script>document.getElementById("p").textContent = "ran " + (6*7)</script>`))
	}))
	defer srv.Close()
	ctx := browsertest.New(t, 30*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#p"))
	if err != nil {
		t.Fatal(err)
	}
	if text != "ran 42" {
		t.Fatalf("page text %q", text)
	}
}

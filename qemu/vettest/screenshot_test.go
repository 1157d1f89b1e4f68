package vettest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// screenshot saves a full-page PNG of url, fetched by headless Chromium with
// the API token, to path. The flags are those of the API's UI test: safe as
// root and quiet on the network.
func screenshot(t *testing.T, browser, profile, url, token, path string) error {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true), // the appliance's self-signed certificate
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelTab()
	// The first Run starts the browser and must not carry a timeout.
	auth := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": "Bearer " + token}})
		return err
	})
	if err := chromedp.Do(bctx, auth); err != nil {
		return fmt.Errorf("starting chromium: %w", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("body"))); err != nil {
		return fmt.Errorf("loading %s: %w", url, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("capturing: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// TestScreenshot checks the helper on loopback: the page is fetched with the
// token (a page without it would be the API's 401) and saved as a PNG.
func TestScreenshot(t *testing.T) {
	browser := findChromium()
	if browser == "" || testing.Short() {
		t.Skip("needs chromium (apt-get install chromium) and no -short")
	}
	var seen atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "<!doctype html><title>report</title><h1>vet-target PASS</h1>")
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "shot.png")
	if err := screenshot(t, browser, filepath.Join(t.TempDir(), "profile"), srv.URL+"/report.html", "tok-1", path); err != nil {
		t.Fatalf("screenshot() error = %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot file: %d bytes, %v; want a PNG", len(b), err)
	}
	if got, _ := seen.Load().(string); got != "Bearer tok-1" {
		t.Errorf("the page was fetched with Authorization %q, want the bearer token", got)
	}
}

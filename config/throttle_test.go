package config

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/authsvc/throttle"
)

func TestLoadThrottleDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Throttle ||
		c.ThrottleLoginIP != (throttle.Rate{Limit: 20, Period: time.Minute}) ||
		c.ThrottleLoginAccount != (throttle.Rate{Limit: 5, Period: time.Minute}) ||
		c.ThrottleRegisterIP != (throttle.Rate{Limit: 5, Period: time.Minute}) ||
		len(c.TrustedProxies) != 0 ||
		c.BcryptConcurrency != runtime.GOMAXPROCS(0) || c.BcryptQueueTimeout != 5*time.Second {
		t.Errorf("Load() = %+v, want the documented throttle defaults", c)
	}
}

func TestLoadThrottle(t *testing.T) {
	c, err := Load(env(map[string]string{
		"THROTTLE": "OFF", "THROTTLE_LOGIN_IP": "100/1h", "THROTTLE_LOGIN_ACCOUNT": "3/30s", "THROTTLE_REGISTER_IP": "1/1 day",
		"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,fd00::/8", "BCRYPT_CONCURRENCY": "3", "BCRYPT_QUEUE_TIMEOUT": "250ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Throttle || c.ThrottleLoginIP != (throttle.Rate{Limit: 100, Period: time.Hour}) ||
		c.ThrottleLoginAccount != (throttle.Rate{Limit: 3, Period: 30 * time.Second}) ||
		c.ThrottleRegisterIP != (throttle.Rate{Limit: 1, Period: 24 * time.Hour}) ||
		c.BcryptConcurrency != 3 || c.BcryptQueueTimeout != 250*time.Millisecond {
		t.Errorf("Load() = %+v", c)
	}
	var got []string
	for _, n := range c.TrustedProxies {
		got = append(got, n.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 127.0.0.1/32 fd00::/8" {
		t.Errorf("TrustedProxies = %v", got)
	}
}

func TestLoadThrottleErrors(t *testing.T) {
	for name, v := range map[string]string{
		"THROTTLE":               "maybe",
		"THROTTLE_LOGIN_IP":      "10",
		"THROTTLE_LOGIN_ACCOUNT": "0/1m",
		"THROTTLE_REGISTER_IP":   "5/never",
		"TRUSTED_PROXIES":        "10.0.0.0/33",
		"BCRYPT_CONCURRENCY":     "0",
		"BCRYPT_QUEUE_TIMEOUT":   "-1s",
	} {
		_, err := Load(env(map[string]string{name: v}))
		if err == nil || !strings.HasPrefix(err.Error(), name+": ") {
			t.Errorf("%s=%q: Load() = %v, want an error naming %s", name, v, err, name)
		}
	}
	if _, err := Load(env(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})); err == nil || !strings.Contains(err.Error(), "proxy.local") {
		t.Errorf("TRUSTED_PROXIES with a host name: Load() = %v, want an error naming it", err)
	}
}

// Command tsslib times bnb-chain/tss-lib v2 threshold ECDSA on this machine, for comparison
// with synod's cggmp21 figures (python -m synod.bench --ecdsa --peer-tsslib).
//
// All parties run in this one process and exchange their wire bytes over channels, so the
// figures are the protocol's computation (every party's, on the machine's cores) without a
// network. Pre-parameters (Paillier safe primes and ring-Pedersen parameters, tss-lib's
// counterpart of CGGMP aux info) are generated for every party in parallel, as each party
// would on its own machine. It prints one JSON object.
package main

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"github.com/bnb-chain/tss-lib/v2/common"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	"github.com/bnb-chain/tss-lib/v2/tss"
)

type result struct {
	Library      string    `json:"library"`
	Threshold    int       `json:"threshold"`
	Parties      int       `json:"parties"`
	PreParamsS   float64   `json:"pre_params_s"`
	KeygenS      float64   `json:"keygen_s"`
	SignS        []float64 `json:"sign_s"`
	PaillierBits int       `json:"paillier_bits"`
}

// route delivers every outgoing message to its recipients until done is closed.
func route(parties map[string]tss.Party, out <-chan tss.Message, errs <-chan *tss.Error,
	done <-chan struct{}) error {
	for {
		select {
		case <-done:
			return nil
		case err := <-errs:
			return err
		case msg := <-out:
			wire, _, err := msg.WireBytes()
			if err != nil {
				return err
			}
			from := msg.GetFrom()
			deliver := func(p tss.Party) {
				go func() {
					if _, err := p.UpdateFromBytes(wire, from, msg.IsBroadcast()); err != nil {
						fmt.Fprintln(os.Stderr, "update:", err)
						os.Exit(1)
					}
				}()
			}
			if to := msg.GetTo(); to == nil {
				for id, p := range parties {
					if id != from.Id {
						deliver(p)
					}
				}
			} else {
				for _, pid := range to {
					deliver(parties[pid.Id])
				}
			}
		}
	}
}

// runAll starts every party, routes their messages and returns each party's output.
func runAll[T any](what string, parties map[string]tss.Party, out <-chan tss.Message,
	end <-chan T) []T {
	errs := make(chan *tss.Error, len(parties))
	for _, p := range parties {
		go func(p tss.Party) {
			if err := p.Start(); err != nil {
				errs <- err
			}
		}(p)
	}
	done := make(chan struct{})
	routed := make(chan error, 1)
	go func() { routed <- route(parties, out, errs, done) }()
	outputs := make([]T, 0, len(parties))
	for len(outputs) < len(parties) {
		select {
		case o := <-end:
			outputs = append(outputs, o)
		case err := <-routed:
			fmt.Fprintln(os.Stderr, what+":", err)
			os.Exit(1)
		}
	}
	close(done)
	return outputs
}

func main() {
	t := flag.Int("t", 3, "signers needed")
	n := flag.Int("n", 5, "parties")
	signs := flag.Int("signatures", 3, "interactive signatures to time")
	flag.Parse()
	if *t < 2 || *t > *n {
		fmt.Fprintln(os.Stderr, "need 2 <= t <= n")
		os.Exit(2)
	}
	res := result{Library: "bnb-chain/tss-lib v2.0.2", Threshold: *t, Parties: *n}

	begin := time.Now()
	pre := make([]*keygen.LocalPreParams, *n)
	var wg sync.WaitGroup
	for i := range pre {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := keygen.GeneratePreParams(10 * time.Minute)
			if err != nil {
				fmt.Fprintln(os.Stderr, "pre-params:", err)
				os.Exit(1)
			}
			pre[i] = p
		}(i)
	}
	wg.Wait()
	res.PreParamsS = time.Since(begin).Seconds()
	res.PaillierBits = pre[0].PaillierSK.N.BitLen()

	ids := tss.GenerateTestPartyIDs(*n)
	ctx := tss.NewPeerContext(ids)
	out := make(chan tss.Message, 1024)
	end := make(chan *keygen.LocalPartySaveData, *n)
	parties := map[string]tss.Party{}
	for i, id := range ids {
		params := tss.NewParameters(tss.S256(), ctx, id, *n, *t-1) // tss-lib: t-1 = degree
		parties[id.Id] = keygen.NewLocalParty(params, out, end, *pre[i])
	}
	begin = time.Now()
	keys := runAll("keygen", parties, out, end)
	res.KeygenS = time.Since(begin).Seconds()

	byID := map[string]*keygen.LocalPartySaveData{}
	for _, k := range keys {
		for j, id := range ids {
			if k.ShareID.Cmp(id.KeyInt()) == 0 {
				byID[ids[j].Id] = k
			}
		}
	}
	pub := keys[0].ECDSAPub
	pk := ecdsa.PublicKey{Curve: tss.S256(), X: pub.X(), Y: pub.Y()}

	for s := 0; s < *signs; s++ {
		digest := sha256.Sum256([]byte(fmt.Sprintf("tss-lib peer benchmark %d", s)))
		signers := tss.SortPartyIDs(tss.UnSortedPartyIDs(ids[:*t]))
		sctx := tss.NewPeerContext(signers)
		sout := make(chan tss.Message, 1024)
		send := make(chan *common.SignatureData, *t)
		sparties := map[string]tss.Party{}
		for _, id := range signers {
			params := tss.NewParameters(tss.S256(), sctx, id, len(signers), *t-1)
			key := keygen.BuildLocalSaveDataSubset(*byID[id.Id], signers)
			msg := new(big.Int).SetBytes(digest[:])
			sparties[id.Id] = signing.NewLocalParty(msg, params, key, sout, send)
		}
		begin = time.Now()
		sig := runAll("signing", sparties, sout, send)[0]
		res.SignS = append(res.SignS, time.Since(begin).Seconds())
		r, sv := new(big.Int).SetBytes(sig.R), new(big.Int).SetBytes(sig.S)
		if !ecdsa.Verify(&pk, digest[:], r, sv) {
			fmt.Fprintln(os.Stderr, "signature does not verify")
			os.Exit(1)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(1)
	}
}

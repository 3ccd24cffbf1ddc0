package index

// Wiring (for the jobs package; this package inserts no jobs itself):
//
//	ix, _ := index.New(index.Options{Pool: pool, Check: store, Write: store,
//	    PublicURL: cfg.PublicURL, R2PublicURL: store.PublicURL, Logger: log})
//
// Per channel_post / message update of bot slot N (a River job, or the
// webhook's own transaction):
//
//	post, ok := index.PostFromMessage(N, botID, msg)  // skip when !ok
//	tx := begin
//	out, err := ix.Index(ctx, tx, post)               // error: roll back, retry the job
//	if out.Reply       { insert reply job {chat, message} in tx }
//	if out.NeedR2Write { insert R2 job {unique_id} in tx, unique by args with
//	                     ByState available, pending, retryable, running, scheduled }
//	commit
//
// For throughput, run one ix.NewBatcher(index.BatcherOptions{}) (go b.Run(ctx))
// and have each index job call b.Index(ctx, post, then), where then(ctx, tx,
// out) inserts the reply/R2 jobs: concurrent jobs share transactions
// (IndexMany), with many index workers (≥ 100) in flight.
//
// Reply job: if !ix.ReplyPending(chat, message) { done }; out := ix.Outcome(chat,
// message); text, button := index.FormatReply(out, ix.ViewURL(out.File.UniqueID));
// send with parse_mode index.ReplyParseMode (reply to the post); then
// ix.MarkReplied(chat, message, sentID).
//
// R2 job: return ix.SyncR2(ctx, uniqueID) (errors.Is(err, ErrUnknownFile):
// cancel the job, it can never succeed). A periodic job (every minute or
// so) calls ix.SyncPending(ctx, time.Minute, 4): River refuses a unique job
// while one for the same file is running, and this sweep writes whatever
// such a refused insert, or a job that exhausted its attempts, left behind.
//
// /find: ix.Find(ctx, text, page, 10). /get: hs := ix.Holders(ctx, id);
// ix.SendWithFailover(ctx, hs, func(ctx, h) error { send h.FileID with the
// bot whose id is h.BotID }). `ferry r2 sync`: ix.SyncAll(ctx, 8, progress).

package index

// Wiring (for the jobs package; this package inserts no jobs itself):
//
//	ix, _ := index.New(index.Options{DB: driver, Check: store, Write: store,
//	    PublicURL: cfg.PublicURL, R2PublicURL: store.PublicURL, Logger: log})
//
// Per batch of channel_post / message updates (any bots, any posts):
//
//	posts := index.PostFromMessage(slot, botID, msg) for each  // skip when !ok
//	db.WithTx(ctx, driver, func(tx db.Tx) error {
//	    outs, err := ix.IndexMany(ctx, tx, posts)  // error: rolled back, retried
//	    for each out: out.Reply       → insert the post's reply job in tx
//	                  out.NeedR2Write → include its file in one R2 job in tx
//	})
//
// Index is IndexMany for one post.
//
// Reply job: for each r of ix.PendingReplies(posts): text, button :=
// index.FormatReply(r.Outcome, ix.ViewURL(r.Outcome.File.UniqueID)); send
// with parse_mode index.ReplyParseMode (reply to the post); then
// ix.MarkReplied(ctx, sent) for the replies sent (several at a time).
//
// R2 job: ix.SyncFiles(ctx, uniqueIDs, 8) (files the database does not
// have are skipped: no retry could write them). A periodic job (every minute
// or so) calls ix.SyncPending(ctx, time.Minute, 4) to write whatever a job
// that exhausted its attempts left behind. `ferry r2 sync`:
// ix.SyncAll(ctx, 8, progress).
//
// /find: ix.Find(ctx, text, page, 10). /get sends through package botpool.

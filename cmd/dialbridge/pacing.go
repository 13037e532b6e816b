package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/multcall/dialbridge/config"
	"github.com/multcall/dialbridge/redisq"
)

// operatorFieldsOption makes the cell's results carry the queue manager's
// operator fields (contract section 2): always on a paced cell, else while
// the queue manager holds its lease.
func operatorFieldsOption(q config.Queue) redisq.QueueOption {
	return redisq.WithOperatorFields(redisq.OperatorFieldsOptions{
		AbandonAfter: q.Pacing.AbandonAfter.D(),
		Paced:        q.Pacing.Paced(),
		Location:     q.Pacing.Location(),
	})
}

// watchQueueManager tells the queue, every second until ctx ends, whether
// the cell's queue manager holds its lease: results of calls that were
// never answered then carry the (empty) operator fields without a round
// trip of their own.
func watchQueueManager(ctx context.Context, rdb redis.Cmdable, q *redisq.Queue) {
	key := redisq.ACDKey(q.Keys().Prefix(), q.Keys().Cell(), "lease")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if n, err := rdb.Exists(ctx, key).Result(); err == nil {
			q.SetQueueManagerSeen(n == 1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

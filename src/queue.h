/*
 * queue.h — one intrusive singly linked FIFO, for every list of the engine
 * that is appended at its tail and taken from its head (finished procs,
 * jobs queued for and returned by thread workers, expired timers).
 *
 * The element embeds its own link (a `next` pointer named by the caller),
 * so queueing never allocates and cannot fail; whoever holds the queue owns
 * what is in it. A queue is two pointers, both NULL when empty:
 *
 *   typedef LC_QUEUE(lc_job) lc_job_queue;
 *   lc_job_queue q = LC_QUEUE_EMPTY;
 *   LC_QUEUE_PUSH(&q, job, next);          append one element
 *   LC_QUEUE_POP(&q, job, next);           job = head (NULL if empty), removed
 *   LC_QUEUE_MOVE(&q, &other, next);       append all of other, which empties
 */
#ifndef LC_QUEUE_H
#define LC_QUEUE_H

#include <stddef.h>

#define LC_QUEUE(type) struct { type *head, *tail; }
#define LC_QUEUE_EMPTY {NULL, NULL}

#define LC_QUEUE_PUSH(q, elem, link)                                       \
    do {                                                                   \
        (elem)->link = NULL;                                               \
        if ((q)->tail) (q)->tail->link = (elem);                           \
        else (q)->head = (elem);                                           \
        (q)->tail = (elem);                                                \
    } while (0)

#define LC_QUEUE_POP(q, out, link)                                         \
    do {                                                                   \
        (out) = (q)->head;                                                 \
        if (out) {                                                         \
            (q)->head = (out)->link;                                       \
            if ((q)->head == NULL) (q)->tail = NULL;                       \
            (out)->link = NULL;                                            \
        }                                                                  \
    } while (0)

#define LC_QUEUE_MOVE(q, from, link)                                       \
    do {                                                                   \
        if ((from)->head) {                                                \
            if ((q)->tail) (q)->tail->link = (from)->head;                 \
            else (q)->head = (from)->head;                                 \
            (q)->tail = (from)->tail;                                      \
            (from)->head = (from)->tail = NULL;                            \
        }                                                                  \
    } while (0)

#endif

/*
 * Stop signals for the programs' main(): SIGINT and SIGTERM only set a flag
 * the run loops poll (a handler does nothing else); SIGPIPE is ignored, so
 * a closed socket is an error return, not a death.
 */
#ifndef CDC_SIGNALS_H
#define CDC_SIGNALS_H

#include <signal.h>

/* Install the handlers; returns the flag they set (process-wide, static). */
volatile sig_atomic_t *cdc_stop_on_signals(void);

#endif

/*
 * The workspace side of a job (workspace.c): shares, overlay mode with its
 * scratch disk, the change set, tmpfs volumes.
 */
#ifndef A3S_WORKSPACE_H
#define A3S_WORKSPACE_H

#include "config.h"

/* A share is mounted in overlay mode: its change set is to be sent when
 * the agent ends (send_changes). */
extern int overlay_mounted;

/* Mount one share on its path, or under an overlay (overlay=TAG). */
void mount_share(const struct share *s);

/* Mount the config's tmpfs volumes (after the shares: one may be in one). */
void mount_volumes(void);

/* Send the overlay's change set on the changes port, then its line. */
void send_changes(void);

#endif

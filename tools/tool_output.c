/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * tool_output.c -- the output set of a command of the still tool: every
 * output file of a command is declared before any work, written to a
 * temporary file beside its target, and renamed onto the target only when
 * every output has been written (man still, OUTPUT FILES).
 *
 *  - tool_out_add (before any work) refuses two outputs that are the same
 *    file -- the same device and inode when it exists, else the same
 *    resolved path (`O.npy` and `./O.npy`, a symbolic link to it) -- and
 *    creates the temporary, so an output that cannot be created stops the
 *    command before it computes anything.  tool_out_input refuses an
 *    input that is one of the outputs.  A symbolic link is followed:
 *    the file it points to is replaced, the link stays.
 *  - A character device (/dev/null) or a FIFO with a reader is written in
 *    place, never replaced by a regular file: it receives its bytes as the
 *    command writes them.  Any other non-regular target (a directory, a
 *    block device, a socket, a FIFO nobody reads) is refused.
 *  - On failure (tool_out_abort, from main) the temporaries are removed;
 *    an existing file is never removed or changed.  SIGINT, SIGTERM and
 *    SIGHUP remove them too (an async-signal-safe handler that unlinks a
 *    fixed table of paths, then re-raises the signal).
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "tool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

typedef struct out_entry {
    char given[PATH_MAX]; /* the path as given (messages, lookup) */
    const char *flag;     /* the option that named it */
    char target[PATH_MAX]; /* resolved: what the commit replaces */
    int fd;               /* open on the temporary, or on the target in place */
    int in_place;         /* a device or FIFO: no temporary, no rename */
    int is_dir;           /* a directory output: tmp_path is a directory */
    int done;             /* written and closed */
    dev_t dev;            /* the target's identity when it exists */
    ino_t ino;
    int exists;
} out_entry;

static out_entry outs[TOOL_OUT_MAX];
static int nouts;
/* What the signal handler reads: fixed storage, a flag per slot. */
static char tmp_path[TOOL_OUT_MAX][PATH_MAX];
static volatile sig_atomic_t tmp_live[TOOL_OUT_MAX];
static volatile sig_atomic_t tmp_dir[TOOL_OUT_MAX];
/* The files and directories made inside a directory output's temporary,
 * in creation order (each string complete before it is counted). */
enum { TREE_MAX = 512 };
static char *tree_path[TREE_MAX];
static volatile sig_atomic_t tree_isdir[TREE_MAX];
static volatile sig_atomic_t tree_n;
static int handlers_installed;

static void forget_tree(void);

/* Removes the tree entries, newest first, then the temporaries. */
static void remove_all(void)
{
    for (int i = tree_n - 1; i >= 0; i--) {
        if (tree_isdir[i])
            rmdir(tree_path[i]);
        else
            unlink(tree_path[i]);
    }
    for (int i = 0; i < TOOL_OUT_MAX; i++)
        if (tmp_live[i]) {
            if (tmp_dir[i])
                rmdir(tmp_path[i]);
            else
                unlink(tmp_path[i]);
        }
}

static const int signals[] = {SIGINT, SIGTERM, SIGHUP};

static void on_signal(int sig)
{
    int saved = errno;
    remove_all(); /* unlink and rmdir only: async-signal-safe */
    errno = saved;
    signal(sig, SIG_DFL); /* SA_RESETHAND did it already; harmless */
    raise(sig);
}

/* An exit that bypasses main's commit or abort (a library's fatal error
 * calling exit) still removes the temporaries. */
static void at_exit(void)
{
    remove_all();
}

static void install_handlers(void)
{
    if (handlers_installed)
        return;
    handlers_installed = 1;
    atexit(at_exit);
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) {
        struct sigaction old, sa;
        if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue; /* nohup and friends: stay ignored */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (size_t j = 0; j < sizeof signals / sizeof *signals; j++)
            sigaddset(&sa.sa_mask, signals[j]);
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigaction(signals[i], &sa, NULL);
    }
}

/* The signals of the handler blocked (1) or restored (0) around a change
 * of the table. */
static void block_signals(int block, sigset_t *old)
{
    sigset_t set;
    if (block) {
        sigemptyset(&set);
        for (size_t j = 0; j < sizeof signals / sizeof *signals; j++)
            sigaddset(&set, signals[j]);
        sigprocmask(SIG_BLOCK, &set, old);
    } else {
        sigprocmask(SIG_SETMASK, old, NULL);
    }
}

/* The resolved form of a path that may not exist: its directory resolved
 * (symbolic links, `.`, `..`), then its last component; a symbolic link
 * as the last component is followed (to a target that may not exist). */
static int resolve_path(const char *path, char *out, size_t len)
{
    char work[PATH_MAX], link[PATH_MAX], dirbuf[PATH_MAX];
    if (strlen(path) >= sizeof work)
        return ENAMETOOLONG;
    strcpy(work, path);
    for (int hops = 0; hops < 40; hops++) {
        struct stat st;
        if (lstat(work, &st) == 0 && S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(work, link, sizeof link - 1);
            if (n < 0)
                return errno;
            link[n] = '\0';
            if (link[0] == '/') {
                strcpy(work, link);
            } else { /* relative to the link's directory */
                char *slash = strrchr(work, '/');
                size_t keep = slash ? (size_t)(slash - work) + 1 : 0;
                if (keep + (size_t)n >= sizeof work)
                    return ENAMETOOLONG;
                memcpy(work + keep, link, (size_t)n + 1);
            }
            continue;
        }
        /* split into directory and name */
        size_t l = strlen(work);
        while (l > 1 && work[l - 1] == '/')
            work[--l] = '\0';
        char *slash = strrchr(work, '/');
        const char *name = slash ? slash + 1 : work;
        if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
            return EISDIR;
        if (slash == work)
            strcpy(dirbuf, "/");
        else if (slash) {
            memcpy(dirbuf, work, (size_t)(slash - work));
            dirbuf[slash - work] = '\0';
        } else
            strcpy(dirbuf, ".");
        char *real = realpath(dirbuf, NULL);
        if (!real)
            return errno;
        int n = snprintf(out, len, "%s%s%s", real, strcmp(real, "/") ? "/" : "", name);
        free(real);
        return n < 0 || (size_t)n >= len ? ENAMETOOLONG : 0;
    }
    return ELOOP;
}

static out_entry *find(const char *path)
{
    for (int i = 0; i < nouts; i++)
        if (!strcmp(outs[i].given, path))
            return &outs[i];
    return NULL;
}

/* Opens a device or FIFO target in place; -1 with errno (ENXIO: a FIFO
 * that nobody reads). */
static int open_in_place(const char *path)
{
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int add_entry(const char *cmd, const char *flag, const char *path, int dir_ok);

/* 0 in a process that writes no output (an MPI rank other than 0). */
static int writer = 1;

void tool_out_writer(int yes)
{
    writer = yes;
}

int tool_out_add(const char *cmd, const char *flag, const char *path)
{
    if (!writer)
        return TOOL_EXIT_OK; /* under MPI rank 0 alone writes (tool_mpi.c) */
    return add_entry(cmd, flag, path, 0);
}

static int add_entry(const char *cmd, const char *flag, const char *path, int dir_ok)
{
    if (!path)
        return TOOL_EXIT_OK;
    if (nouts >= TOOL_OUT_MAX)
        return tool_fail(TOOL_EXIT_USAGE, cmd, "%s %s: too many outputs", flag, path);
    out_entry *e = &outs[nouts];
    memset(e, 0, sizeof *e);
    if (strlen(path) >= sizeof e->given)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: path too long", flag);
    strcpy(e->given, path);
    e->flag = flag;
    e->fd = -1;
    /* what the path names, through every link (also /dev/stdout's) */
    struct stat st;
    if (stat(path, &st) == 0) {
        e->exists = 1;
        e->dev = st.st_dev;
        e->ino = st.st_ino;
    } else if (errno != ENOENT) {
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: %s", flag, path, strerror(errno));
    }
    int err = 0;
    const int in_place = e->exists && !S_ISREG(st.st_mode) && !(dir_ok && S_ISDIR(st.st_mode));
    if (in_place) /* written in place, by its own name */
        strcpy(e->target, e->given);
    else
        err = resolve_path(path, e->target, sizeof e->target);
    if (err)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: cannot write there: %s", flag, path,
                         strerror(err));
    for (int i = 0; i < nouts; i++)
        if ((e->exists && outs[i].exists && outs[i].dev == e->dev && outs[i].ino == e->ino) ||
            !strcmp(outs[i].target, e->target))
            return tool_fail(TOOL_EXIT_USAGE, cmd, "%s %s and %s %s are the same file; each "
                             "output needs a file of its own", outs[i].flag, outs[i].given,
                             flag, path);
    if (in_place) {
        if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
            return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: %s; expected a regular file, a "
                             "character device or a FIFO", flag, path,
                             S_ISDIR(st.st_mode) ? "a directory" : S_ISBLK(st.st_mode)
                             ? "a block device" : "not a file");
        if ((e->fd = open_in_place(e->target)) < 0)
            return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: cannot write to it: %s", flag, path,
                             errno == ENXIO ? "a FIFO that nobody reads" : strerror(errno));
        e->in_place = 1;
        nouts++;
        return TOOL_EXIT_OK;
    }
    /* a temporary beside the target (same file system: the rename is atomic) */
    int slot = nouts, n = snprintf(tmp_path[slot], PATH_MAX, "%s.tmp-XXXXXX", e->target);
    if (n < 0 || n >= PATH_MAX)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: path too long", flag, path);
    install_handlers();
    sigset_t old;
    block_signals(1, &old);
    tmp_dir[slot] = 0;
    e->fd = mkstemp(tmp_path[slot]);
    int saved = errno;
    if (e->fd >= 0) {
        atomic_signal_fence(memory_order_seq_cst); /* the path before its flag */
        tmp_live[slot] = 1;
    }
    block_signals(0, &old);
    if (e->fd < 0)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: cannot create a file there: %s", flag,
                         path, strerror(saved));
    /* mkstemp's 0600, made what a new file gets (0666 less the umask) */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(e->fd, e->exists ? st.st_mode & 07777 : 0666 & ~mask);
    nouts++;
    return TOOL_EXIT_OK;
}

int tool_out_input(const char *cmd, const char *flag, const char *path)
{
    char target[PATH_MAX];
    struct stat st;
    if (!path)
        return TOOL_EXIT_OK;
    int exists = stat(path, &st) == 0;
    if (resolve_path(path, target, sizeof target))
        target[0] = '\0'; /* compared by identity only */
    for (int i = 0; i < nouts; i++)
        if ((exists && outs[i].exists && outs[i].dev == st.st_dev && outs[i].ino == st.st_ino) ||
            !strcmp(outs[i].target, target))
            return tool_fail(TOOL_EXIT_USAGE, cmd, "%s %s is also the input %s %s; write the "
                             "output to another file", outs[i].flag, outs[i].given, flag, path);
    return TOOL_EXIT_OK;
}

int tool_out_fd(const char *cmd, const char *path)
{
    out_entry *e = find(path);
    if (!e || e->done || e->fd < 0) {
        tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: not an open output of this command", path);
        return -1;
    }
    return e->fd;
}

int tool_out_close(const char *cmd, const char *path)
{
    out_entry *e = find(path);
    if (!e || e->done || e->fd < 0)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: not an open output of this command", path);
    int rc = 0;
    if (!e->in_place && fsync(e->fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = errno;
    if (close(e->fd) != 0 && !rc)
        rc = errno;
    e->fd = -1;
    if (rc)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: cannot write the output file: %s", path,
                         strerror(rc));
    e->done = 1;
    return TOOL_EXIT_OK;
}

int tool_out_write(const char *cmd, const char *path, const still__write_part *parts, int n)
{
    char err[STILL__ERRLEN];
    int fd = tool_out_fd(cmd, path);
    if (fd < 0)
        return TOOL_EXIT_OUTPUT;
    if (still__write_fd(fd, path, parts, n, err, sizeof err))
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err);
    return tool_out_close(cmd, path);
}

int tool_out_commit(const char *cmd)
{
    for (int i = 0; i < nouts; i++)
        if (!outs[i].done) {
            int rc = tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: not written", outs[i].flag,
                               outs[i].given);
            tool_out_abort();
            return rc;
        }
    /* every output written: the renames (a rename in one directory fails
     * only if the directory changed under the command) */
    for (int i = 0; i < nouts; i++) {
        if (outs[i].in_place)
            continue;
        if (rename(tmp_path[i], outs[i].target) != 0) { /* a directory: onto an empty one */
            int rc = tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: cannot move the output into place: "
                               "%s", outs[i].given, strerror(errno));
            tool_out_abort();
            return rc;
        }
        tmp_live[i] = 0;
    }
    forget_tree();
    nouts = 0;
    return TOOL_EXIT_OK;
}

void tool_out_abort(void)
{
    sigset_t old;
    block_signals(1, &old);
    for (int i = 0; i < nouts; i++) {
        if (outs[i].fd >= 0)
            close(outs[i].fd);
        outs[i].fd = -1;
    }
    remove_all();
    for (int i = 0; i < TOOL_OUT_MAX; i++)
        tmp_live[i] = 0;
    forget_tree();
    nouts = 0;
    block_signals(0, &old);
}

/* ---- a directory output (still golden --out) ------------------------------- */

static void forget_tree(void)
{
    int n = tree_n;
    tree_n = 0;
    for (int i = 0; i < n; i++) {
        free(tree_path[i]);
        tree_path[i] = NULL;
    }
}

int tool_out_add_dir(const char *cmd, const char *flag, const char *path, const char **tmpdir)
{
    struct stat st;
    int rc;
    *tmpdir = NULL;
    if (stat(path, &st) == 0) {
        DIR *d = S_ISDIR(st.st_mode) ? opendir(path) : NULL;
        struct dirent *ent;
        int empty = d != NULL;
        while (empty && (ent = readdir(d)))
            empty = !strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..");
        if (d)
            closedir(d);
        if (!empty)
            return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: exists and is not an empty "
                             "directory", flag, path);
    }
    /* declared as a file (its checks, its identity), then made a directory */
    if ((rc = add_entry(cmd, flag, path, 1)))
        return rc;
    out_entry *e = &outs[nouts - 1];
    int slot = nouts - 1;
    sigset_t old;
    block_signals(1, &old);
    close(e->fd);
    e->fd = -1;
    unlink(tmp_path[slot]);
    tmp_live[slot] = 0;
    /* the same name, now a directory of our own */
    int made = mkdir(tmp_path[slot], 0777) == 0;
    int saved = errno;
    if (made) {
        tmp_dir[slot] = 1;
        atomic_signal_fence(memory_order_seq_cst);
        tmp_live[slot] = 1;
    }
    block_signals(0, &old);
    if (!made) {
        nouts--;
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s %s: cannot create a directory beside it: "
                         "%s", flag, path, strerror(saved));
    }
    e->is_dir = 1;
    e->done = 1; /* its files are the command's */
    *tmpdir = tmp_path[slot];
    return TOOL_EXIT_OK;
}

/* Registers path (a file or directory about to be made in a directory
 * output's temporary) for removal; 0, or -1 when the table is full. */
static int tree_add(const char *path, int isdir)
{
    for (int i = 0; i < tree_n; i++)
        if (!strcmp(tree_path[i], path))
            return 0; /* rewritten: registered already */
    if (tree_n >= TREE_MAX)
        return -1;
    char *copy = malloc(strlen(path) + 1);
    if (!copy)
        return -1;
    strcpy(copy, path);
    sigset_t old;
    block_signals(1, &old);
    tree_path[tree_n] = copy;
    tree_isdir[tree_n] = isdir;
    atomic_signal_fence(memory_order_seq_cst);
    tree_n = tree_n + 1;
    block_signals(0, &old);
    return 0;
}

int tool_out_tree_mkdir(const char *cmd, const char *path)
{
    if (tree_add(path, 1))
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: too many files", path);
    if (mkdir(path, 0777) != 0)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: cannot create: %s", path, strerror(errno));
    return TOOL_EXIT_OK;
}

int tool_out_tree_open(const char *cmd, const char *path)
{
    int fd = -1;
    if (tree_add(path, 0))
        tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: too many files", path);
    else if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666)) < 0)
        tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: cannot create: %s", path, strerror(errno));
    return fd;
}

int tool_out_tree_close(const char *cmd, const char *path, int fd, int rc, const char *err)
{
    if (close(fd) != 0 && !rc)
        return tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s: cannot write: %s", path, strerror(errno));
    return rc ? tool_fail(TOOL_EXIT_OUTPUT, cmd, "%s", err) : TOOL_EXIT_OK;
}

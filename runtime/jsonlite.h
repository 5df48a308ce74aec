/* A minimal strict JSON parser into an arena DOM, for the tokenizer's
 * canonical JSON (jansson is about 2x too slow for a 262k-token vocabulary).
 * Private to runtime/. */
#ifndef FM_RUNTIME_JSONLITE_H
#define FM_RUNTIME_JSONLITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


enum { JN_NULL, JN_FALSE, JN_TRUE, JN_NUM, JN_STR, JN_ARR, JN_OBJ };

typedef struct jnode {
    uint8_t type;
    uint8_t is_int; /* number literal without fraction or exponent */
    uint32_t next;  /* next sibling; 0 = none (node 0 is the root) */
    union {
        double num;
        struct {
            uint32_t off, len;
        } s;
        struct {
            uint32_t first, n; /* objects: key, value, key, value, ... */
        } c;
    } v;
} jnode;

typedef struct jparser {
    const unsigned char *p, *end, *start;
    jnode *nodes;
    size_t n_nodes, cap_nodes;
    char *str; /* decoded strings, each NUL-terminated */
    size_t n_str, cap_str;
    char err[160];
    bool oom;
} jparser;


int jparse(jparser *j, const char *text, size_t len);
void jfree(jparser *j);
const jnode *jget(const jparser *j, const jnode *o, const char *key);
const char *jtype_name(const jnode *n);

#endif

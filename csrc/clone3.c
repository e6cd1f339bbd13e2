/* clone3.c: the clone3 trampoline.
 *
 * glibc has no public clone3(), and syscall(SYS_clone3) cannot give a CLONE_VM child a
 * stack of its own: the child would return through the caller's frame on a stack it
 * shares with the parent. These few instructions do what glibc's internal __clone3 does:
 * the child, already on its new stack, calls fn(arg) and exits with its result, never
 * returning into C code that the parent also runs. */
#include <errno.h>
#include "syscalls.h"

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl pc_clone3_fn\n"
    ".hidden pc_clone3_fn\n"
    ".type pc_clone3_fn,@function\n"
    "pc_clone3_fn:\n"
    "    mov %rdx, %r8\n"          /* fn: r8 and r9 survive the syscall */
    "    mov %rcx, %r9\n"          /* arg */
    "    mov $435, %eax\n"         /* SYS_clone3; rdi = args, rsi = size */
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jnz 1f\n"
    "    xor %ebp, %ebp\n"         /* child: outermost frame on the new stack */
    "    mov %r9, %rdi\n"
    "    call *%r8\n"
    "    mov %eax, %edi\n"
    "    mov $60, %eax\n"          /* SYS_exit */
    "    syscall\n"
    "    hlt\n"
    "1:  ret\n"
    ".size pc_clone3_fn, .-pc_clone3_fn\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl pc_clone3_fn\n"
    ".hidden pc_clone3_fn\n"
    ".type pc_clone3_fn,%function\n"
    "pc_clone3_fn:\n"
    "    mov x8, #435\n"           /* x0 = args, x1 = size; x2 = fn, x3 = arg survive svc */
    "    svc #0\n"
    "    cbnz x0, 1f\n"
    "    mov x29, xzr\n"
    "    mov x30, xzr\n"
    "    mov x0, x3\n"
    "    blr x2\n"
    "    mov x8, #93\n"            /* SYS_exit */
    "    svc #0\n"
    "    brk #0\n"
    "1:  ret\n"
    ".size pc_clone3_fn, .-pc_clone3_fn\n");
#else
long pc_clone3_fn(struct clone_args *args, size_t size, int (*fn)(void *), void *arg)
{
    (void)args; (void)size; (void)fn; (void)arg;
    return -ENOSYS;
}
#endif

/* Prints the running kernel's release as the guest's C library sees it: proves that a program
 * compiled on the host with gcc -static runs in the guest. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void) {
    struct utsname u;
    if (uname(&u) != 0) {
        perror("uname");
        return 1;
    }
    printf("PROGRAM-RELEASE %s\n", u.release);
    return 0;
}

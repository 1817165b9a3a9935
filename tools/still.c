#include "still.h"
#include <stdio.h>
int main(void) { puts(still_version_string()); return 0; }

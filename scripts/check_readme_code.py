#!/usr/bin/env python3
"""Compiles and runs the C and C++ code blocks of the READMEs against an installed prefix.

    scripts/check_readme_code.py PREFIX WORKDIR FILE.md...

Every ```c and ```cpp block becomes a program: its #include lines stay at the top, the rest
becomes the body of main(). A block that uses names it does not define (an excerpt of a
larger program) is preceded by an HTML comment that declares them, invisible on the
rendered page:

    <!-- readme-code prelude
    #include <vector>
    static std::vector<double> z(12);
    -->

C blocks build with `cc -std=c11`, C++ blocks with `c++ -std=c++17`, both with -Wall -Wextra
-Werror, linked to PREFIX's libera; each program then runs and must exit 0.
"""

import os
import re
import subprocess
import sys

BLOCK = re.compile(r"(?:<!-- readme-code prelude\n(?P<prelude>.*?)-->\n)?```(?P<lang>c|cpp)\n(?P<code>.*?)```",
                   re.S)


def blocks(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        yield m.group("lang"), m.group("prelude") or "", m.group("code"), line


def program(prelude, code):
    lines = code.splitlines()
    includes = [l for l in lines if l.startswith("#include")]
    body = [l for l in lines if not l.startswith("#include")]
    return "\n".join(includes + [prelude, "int main(void) {"] + ["    " + l for l in body]
                     + ["    return 0;", "}", ""])


def main():
    prefix, work, files = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    os.makedirs(work, exist_ok=True)
    failures = count = 0
    for path in files:
        for lang, prelude, code, line in blocks(path):
            count += 1
            name = re.sub(r"\W", "_", f"{path}_{line}")
            source = os.path.join(work, name + (".c" if lang == "c" else ".cpp"))
            exe = os.path.join(work, name)
            with open(source, "w", encoding="utf-8") as f:
                f.write(program(prelude, code).replace("int main(void)", "int main()") if lang == "cpp"
                        else program(prelude, code))
            compiler = ["cc", "-std=c11"] if lang == "c" else ["c++", "-std=c++17"]
            cmd = compiler + ["-Wall", "-Wextra", "-Werror", "-I", f"{prefix}/include", source, "-o", exe,
                              "-L", f"{prefix}/lib", "-lera", f"-Wl,-rpath,{prefix}/lib", "-lm"]
            steps = [cmd, [exe]]
            for step in steps:
                result = subprocess.run(step, capture_output=True, text=True)
                if result.returncode != 0:
                    failures += 1
                    print(f"check_readme_code: {path}:{line} ({lang}): {' '.join(step[:2])} failed "
                          f"(exit {result.returncode}); the program is {source}\n{result.stdout}{result.stderr}")
                    break
    print(f"check_readme_code: {count} C/C++ blocks in {len(files)} files, {failures} failed")
    sys.exit(1 if failures or count == 0 else 0)


if __name__ == "__main__":
    main()

<#
.SYNOPSIS
Builds Rill for Windows: dist\rill\ (rill.exe, q.exe) and the installer
dist\Rill-VERSION-windows-x64-setup.exe.

.DESCRIPTION
Renders the icons (build\icons\rill.ico), runs PyInstaller with packaging\rill.spec, runs
the self-test of the frozen rill.exe, reports the unpacked size, and compiles
packaging\windows\rill.iss with Inno Setup 6.

Run it from any folder, in Windows PowerShell 5.1 or PowerShell 7:

    powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1

It needs Python 3.11 or newer (64-bit) with Rill installed with the package extra
(py -3.11 -m venv .venv; .venv\Scripts\pip install -e ".[package]"), and Inno Setup 6 for
the installer (winget install JRSoftware.InnoSetup).

.PARAMETER Python
The Python to build with. Default: .venv\Scripts\python.exe, else python on PATH.

.PARAMETER SkipInstaller
Build and test dist\rill only; do not compile the installer.
#>
[CmdletBinding()]
param(
    [string]$Python = "",
    [switch]$SkipInstaller
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version 3.0

$Root = (Resolve-Path (Join-Path $PSScriptRoot "..\..")).Path
Set-Location $Root
$Started = Get-Date

function Invoke-Native {
    # Runs a program and throws when it exits with a non-zero status.
    param(
        [Parameter(Mandatory = $true)][string]$FilePath,
        [string[]]$Arguments = @()
    )
    & $FilePath @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$FilePath $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

if (-not $Python) {
    $Venv = Join-Path $Root ".venv\Scripts\python.exe"
    if (Test-Path $Venv) { $Python = $Venv } else { $Python = (Get-Command python.exe).Source }
}
& $Python -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('PyInstaller') and u.find_spec('desktop_app') else 1)"
if ($LASTEXITCODE -ne 0) {
    throw "$Python lacks PyInstaller or Rill; run: $Python -m pip install -e "".[package]"""
}

$Version = (& $Python -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])").Trim()
$Numeric = (& $Python -c "import sys; sys.path.insert(0, 'packaging'); import rill_bundle as b; print('.'.join(str(n) for n in b.numeric_version(b.project_version())))").Trim()

Write-Host "== icons"
$env:QT_QPA_PLATFORM = "offscreen"
Invoke-Native $Python @("packaging\icons.py", "--out", "build\icons")

Write-Host "== PyInstaller (Rill $Version)"
Invoke-Native $Python @(
    "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
    "--workpath", "build\pyinstaller", "--distpath", "dist", "packaging\rill.spec"
)
$RillExe = Join-Path $Root "dist\rill\rill.exe"
$QExe = Join-Path $Root "dist\rill\q.exe"
foreach ($Exe in @($RillExe, $QExe)) {
    if (-not (Test-Path $Exe)) { throw "PyInstaller did not produce $Exe" }
}

Write-Host "== self-test"
# rill.exe is a windowed program: piping its output makes PowerShell wait for it and
# gives it a standard output to write the report to.
& $RillExe --self-test | Write-Host
if ($LASTEXITCODE -ne 0) { throw "the self-test of $RillExe failed (exit code $LASTEXITCODE)" }
Invoke-Native $QExe @("--version")

$Bytes = (Get-ChildItem -Path (Join-Path $Root "dist\rill") -Recurse -File | Measure-Object -Property Length -Sum).Sum
Write-Host ("unpacked size {0:N0} MB" -f ($Bytes / 1MB))

if ($SkipInstaller) {
    Write-Host "installer skipped (-SkipInstaller)"
    exit 0
}

Write-Host "== installer"
$Iscc = Get-Command iscc.exe -ErrorAction SilentlyContinue
if ($Iscc) {
    $IsccPath = $Iscc.Source
} else {
    $Candidates = @(
        "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe",
        "$env:ProgramFiles\Inno Setup 6\ISCC.exe",
        "$env:LOCALAPPDATA\Programs\Inno Setup 6\ISCC.exe"
    )
    $IsccPath = $Candidates | Where-Object { Test-Path $_ } | Select-Object -First 1
}
if (-not $IsccPath) {
    throw "Inno Setup 6 is not installed (winget install JRSoftware.InnoSetup); or pass -SkipInstaller"
}
Invoke-Native $IsccPath @(
    "/Q",
    "/DAppVersion=$Version",
    "/DNumericVersion=$Numeric",
    "/DSourceDir=$Root\dist\rill",
    "/DOutputDir=$Root\dist",
    "/DIconFile=$Root\build\icons\rill.ico",
    "$Root\packaging\windows\rill.iss"
)
$Setup = Join-Path $Root "dist\Rill-$Version-windows-x64-setup.exe"
if (-not (Test-Path $Setup)) { throw "Inno Setup did not produce $Setup" }
$Elapsed = [int]((Get-Date) - $Started).TotalSeconds
Write-Host ("wrote {0} ({1:N0} MB) in {2} s" -f $Setup, ((Get-Item $Setup).Length / 1MB), $Elapsed)

; Inno Setup 6 script of Rill's Windows installer.
;
; packaging\windows\build.ps1 compiles it after the PyInstaller build, passing:
;   iscc /DAppVersion=0.1.0 /DNumericVersion=0.1.0.0 /DSourceDir=<repo>\dist\rill
;        /DOutputDir=<repo>\dist /DIconFile=<repo>\build\icons\rill.ico packaging\windows\rill.iss
;
; The installer puts dist\rill (rill.exe, q.exe, _internal\) in
; %LOCALAPPDATA%\Programs\Rill for the current user (or Program Files\Rill when run as an
; administrator for all users), adds Rill to the Start menu (optionally the desktop), can
; add the folder to PATH for the q command, and registers an uninstaller that removes all
; of it. Conversations, settings and API keys are left alone by the uninstaller.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z packaging\windows\rill.iss
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\rill"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\rill.ico"
#endif
#ifndef NumericVersion
  #define NumericVersion "0.0.0.0"
#endif

[Setup]
AppId={{D8286224-D227-4883-9DE8-10C11149AEEE}
AppName=Rill
AppVersion={#AppVersion}
AppVerName=Rill {#AppVersion}
AppPublisher=Rill
AppComments=A desktop chat client for large language models
VersionInfoDescription=Rill installer
VersionInfoProductName=Rill
VersionInfoProductTextVersion={#AppVersion}
VersionInfoVersion={#NumericVersion}
DefaultDirName={autopf}\Rill
DefaultGroupName=Rill
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir={#OutputDir}
OutputBaseFilename=Rill-{#AppVersion}-windows-x64-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\rill.exe
UninstallDisplayName=Rill {#AppVersion}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add Rill's folder to PATH, for the q terminal command"; GroupDescription: "Terminal:"; Flags: unchecked

[InstallDelete]
; an upgrade replaces the whole program, so no library of an older version stays behind
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Rill"; Filename: "{app}\rill.exe"; WorkingDir: "{app}"; Comment: "Chat with large language models"
Name: "{autodesktop}\Rill"; Filename: "{app}\rill.exe"; WorkingDir: "{app}"; Comment: "Chat with large language models"; Tasks: desktopicon

[Run]
Filename: "{app}\rill.exe"; Description: "{cm:LaunchProgram,Rill}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: dirifempty; Name: "{app}"

[Code]
const
  UserEnvironment = 'Environment';
  MachineEnvironment = 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';

function EnvironmentRoot: Integer;
begin
  if IsAdminInstallMode then
    Result := HKEY_LOCAL_MACHINE
  else
    Result := HKEY_CURRENT_USER;
end;

function EnvironmentKey: String;
begin
  if IsAdminInstallMode then
    Result := MachineEnvironment
  else
    Result := UserEnvironment;
end;

// Position of Dir in the ';'-separated Paths (1-based, as an index into Paths), or 0.
function PathPosition(Paths, Dir: String): Integer;
begin
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';');
end;

procedure AddToPath(Dir: String);
var
  Paths: String;
begin
  if not RegQueryStringValue(EnvironmentRoot, EnvironmentKey, 'Path', Paths) then
    Paths := '';
  if PathPosition(Paths, Dir) > 0 then
    Exit;
  if (Paths <> '') and (Copy(Paths, Length(Paths), 1) <> ';') then
    Paths := Paths + ';';
  if not RegWriteExpandStringValue(EnvironmentRoot, EnvironmentKey, 'Path', Paths + Dir) then
    Log('Could not add ' + Dir + ' to PATH');
end;

procedure RemoveFromPath(Dir: String);
var
  Paths: String;
  P: Integer;
begin
  if not RegQueryStringValue(EnvironmentRoot, EnvironmentKey, 'Path', Paths) then
    Exit;
  P := PathPosition(Paths, Dir);
  if P = 0 then
    Exit;
  if P > 1 then
    Delete(Paths, P - 1, Length(Dir) + 1)
  else
    Delete(Paths, 1, Length(Dir) + 1);
  if not RegWriteExpandStringValue(EnvironmentRoot, EnvironmentKey, 'Path', Paths) then
    Log('Could not remove ' + Dir + ' from PATH');
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') then
    AddToPath(ExpandConstant('{app}'));
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveFromPath(ExpandConstant('{app}'));
end;

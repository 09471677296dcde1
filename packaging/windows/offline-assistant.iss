; Offline Assistant: Windows installer (Inno Setup 6.3 or later: x64compatible is 6.3's).
;
; Built by `py tools\build_installer.py windows`, which passes the defines below:
;   iscc /DAppVersion=0.1.0 /DSourceDir=<bundle folder> /DOutputDir=<dist> /DIconFile=<app.ico>
;        packaging\windows\offline-assistant.iss
;
; Per-user install: no administrator rights, no UAC prompt. Files go to
; %LOCALAPPDATA%\Programs\Offline Assistant ({autopf} in non-admin mode). The user's data
; (history, settings, models) lives elsewhere (%LOCALAPPDATA%\offline-assistant) and is kept
; on uninstall, as Windows users expect.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\bundle\offline-assistant"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\app.ico"
#endif

#define AppName "Offline Assistant"
; The windowed program (menus, start at login) and the console one (terminal use).
#define GuiExe "OfflineAssistant.exe"
#define CliExe "offline-assistant.exe"

[Setup]
; Never change AppId: upgrades and the uninstaller find the installed copy by it.
AppId={{8F0C6A2E-5B7D-4C1E-9A3F-2D6B1E4C7A90}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Offline Assistant developers
AppPublisherURL=https://github.com/offline-assistant/offline-assistant
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir={#OutputDir}
OutputBaseFilename=OfflineAssistant-{#AppVersion}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\{#GuiExe}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; An upgrade closes a running copy first (Restart Manager) instead of failing on locked files.
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "startatlogin"; Description: "Start {#AppName} when I sign in to Windows"; GroupDescription: "Other:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#GuiExe}"; Comment: "A private assistant that runs on this computer"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#GuiExe}"; Tasks: desktopicon

[Registry]
; Start at login: the very per-user Run value the app's own "Start at login" setting writes
; (assistant/autostart.py: named after the app, the windowed program with --hidden, so it
; starts in the tray). The setting then shows it, and turning the setting off removes it; a
; Startup-folder shortcut would be a second switch the app cannot see.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "{#AppName}"; ValueData: """{app}\{#GuiExe}"" --hidden"; Tasks: startatlogin; Flags: uninsdeletevalue

[Run]
Filename: "{app}\{#GuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Python writes nothing into the bundle, but a crash dump or a stray cache must not keep the
; folder alive after uninstalling.
Type: filesandordirs; Name: "{app}\_internal"

[Code]
// The app's setting may have written the Run value after installing (without the task):
// it must not outlive the app and start a program that is gone at every sign-in.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
    RegDeleteValue(HKCU, 'Software\Microsoft\Windows\CurrentVersion\Run', '{#AppName}');
end;
